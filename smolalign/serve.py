"""A real OpenAI-compatible server on 127.0.0.1 for a local model: `transformers serve`, started and stopped here.

`smolalign demo` generates data over it the way a user would over vLLM or TGI; tests use it the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def local_server(model_dir: str | Path, log_path: str | Path, start_timeout: float = 300.0) -> Iterator[str]:
    """Serve `model_dir` on a free local port for the block; yields the base URL (`http://127.0.0.1:P/v1`)."""
    executable = Path(sys.executable).parent / "transformers"
    if not executable.exists():
        raise UsageError("`transformers serve` is not installed: pip install 'transformers[serving]'")
    from .model.gguf import resolve_model

    model_dir = resolve_model(str(model_dir))[0]  # `transformers serve` reads directories: a GGUF file is imported
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        # one thread: the server shares the machine with the pipeline that calls it
        process = subprocess.Popen([str(executable), "serve", str(model_dir), "--device", "cpu", "--host",
                                    "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if process.poll() is not None:
                    tail = Path(log_path).read_text()[-300:].strip().splitlines()[-1:] or ["no output"]
                    raise UsageError(f"the local model server exited at start ({tail[0]}): see {log_path}")
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise UsageError(f"the local model server did not answer within {start_timeout:.0f} s: "
                                         f"see {log_path}") from None
                    time.sleep(0.5)
            yield f"{url}/v1"
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def no_models_route(base_url: str, status: int) -> str:
    """What to do when a server answers at `base_url` but not with a model list on /models (HTTP `status`): a URL
    without its API root (`/v1`), or a server that is no OpenAI-compatible one. (It answered: "start it" is wrong.)"""
    if status == 404 and not base_url.rstrip("/").endswith("/v1"):
        return (f"a server answers at {base_url} but has no /models there (HTTP 404): give its API root, e.g. "
                f"--base-url {base_url.rstrip('/')}/v1")
    return (f"a server answers at {base_url} but has no /models (HTTP {status}): it is not an OpenAI-compatible API "
            f"server (another service on that port?): point --base-url at vLLM, `transformers serve` or llama.cpp's "
            f"llama-server, e.g. http://127.0.0.1:8000/v1")
