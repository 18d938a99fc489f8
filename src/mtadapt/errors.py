"""mtadapt's own exceptions: the errors a user can fix, each with a message naming what to fix.

    MtadaptError                    anything the user can fix; the CLI prints one line, exit 2
      DataError                     a corpus or text file: file:line, what is wrong, what is valid
      ConfigError                   a recipe key, an override, a flag value or a Python API argument
      ModelError                    a base model that cannot be found or read
        MarianFormatError           a Marian .bin/.npz/shortlist file (models/marian_native/binary.py)
      AdapterError                  an adapter folder (its JSON or its weights; also what `serve` cannot serve)
        FingerprintMismatchError    an adapter trained on another base (methods/storage.py)
      CheckpointError               a run folder: its checkpoints, run.yaml, what --resume finds
      TrainingError                 a run that cannot go on (a non-finite loss)
      FolderInUseError              a run or work folder another mtadapt process holds (its PID named)
    MtadaptWarning                  something was changed to carry on (a source truncated)

Every class is also a `ValueError`, as the plain `ValueError`s it replaces were, so callers that
catch `ValueError` keep working. An exception that is not an `MtadaptError` is a bug: the CLI
shows its traceback with `--debug` (or MTADAPT_DEBUG=1).

This module imports nothing: every layer may raise these. A subclass kept next to the code that
raises it (as above) must still derive from one of these, so that the CLI reports it as one line.
"""

from __future__ import annotations


class MtadaptError(ValueError):
    """A problem the user can fix; the message says what and where (file, line, flag, value)."""


class DataError(MtadaptError):
    """Bad input data; the message names the file and line (or TMX <tu> index)."""


class ConfigError(MtadaptError):
    """One or more invalid settings; the message lists them all."""


class ModelError(MtadaptError):
    """A base model that cannot be found or loaded; names the path or hub name."""


class AdapterError(MtadaptError):
    """A saved adapter that cannot be read or does not fit the model; names the file."""


class CheckpointError(MtadaptError):
    """A run folder, checkpoint or run.yaml that cannot be used; names the file."""


class TrainingError(MtadaptError):
    """Training cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


class FolderInUseError(MtadaptError):
    """A folder that another process holds (`mtadapt.io.folder_lock`); names the folder and its PID."""


class MtadaptWarning(UserWarning):
    """Something was changed to carry on (e.g. an over-long source truncated); the CLI prints
    it as one `warning:` line."""
