"""Helpers of the serve tests: a real `mtadapt serve` subprocess on a free port (or the same app
on uvicorn in a thread), adapters with random non-zero weights, and per-sentence reference
translations."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

from mtadapt.methods import base, storage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m mtadapt.cli serve CONFIG --port P` in a subprocess, its output in a log file."""

    def __init__(self, config: Path, port: int | None = None, log: Path | None = None) -> None:
        self.config, self.port = config, port or free_port()
        self.log = log or config.with_suffix(".log")
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ServerProcess":
        return self.launch().wait(timeout)

    def launch(self) -> "ServerProcess":
        """Start the process without waiting (the caller may work meanwhile, then `wait`)."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        src = str(Path(__file__).resolve().parents[1] / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mtadapt.cli", "serve", str(self.config), "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        return self

    def wait(self, timeout: float = 120.0) -> "ServerProcess":
        """Until /health answers 200."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /health within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class ThreadServer:
    """The same app on uvicorn in a thread of the test process: a real HTTP server on a free
    port without a second interpreter importing torch and loading the model (33.5 s against
    2.5 s for a tiny model on 2 busy cores), for tests of what the server answers rather than of
    the `mtadapt serve` command."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __enter__(self) -> "ThreadServer":
        import uvicorn

        from mtadapt.serve.app import bind_socket, create_app
        from mtadapt.serve.config import load_serve_config
        from mtadapt.serve.engine import load_engine

        config = load_serve_config(self.config)
        app = create_app(config, load_engine(config))
        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the in-process server did not start (config {self.config})")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def randomize_adapter(model: torch.nn.Module, name: str, seed: int, scale: float = 0.5) -> None:
    """Fill every parameter of adapter `name` with seeded random values (so it changes outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in base.adapter_layers(model):
            if name in layer.adapter_names():
                for p in layer.adapter_parameters(name):
                    p.copy_(torch.randn(p.shape, generator=g) * scale)


def make_adapter(model: torch.nn.Module, targets, config, name: str, folder: Path, seed: int) -> Path:
    """Add, randomize, save and remove one adapter; returns its folder."""
    storage.add_adapter(model, config, targets, name)
    randomize_adapter(model, name, seed)
    storage.save_adapter(model, folder, name)
    return folder
