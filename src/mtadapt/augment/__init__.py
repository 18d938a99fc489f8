"""Synthetic training data from monolingual text.

    noise.py          word-level noise: dropout, local shuffle, insertion, blanking (Edunov et al.)
    backtranslate.py  back- and forward translation through an inference engine (beam, sampled,
                      noised, tagged), streamed and sharded over ranks; mixing real and synthetic
"""
