"""MLServer as a peer: started from its own virtual environment on free loopback ports, serving
the lead model through ``benchmarks/mlserver/runtime.py``, over its V2 (OIP) gRPC endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import grpc

from benchmarks.servers import ServerProcess, ServerStartError, free_port, last_line, wait_until
from leadgw_client.pb.inference import grpc_service_pb2, grpc_service_pb2_grpc

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = HERE / ".venv-mlserver"
RUNTIME = HERE / "mlserver" / "runtime.py"
SETUP = HERE / "mlserver" / "setup.sh"


def mlserver_version(venv: Path) -> str | None:
    """MLServer's version in ``venv``, or None when it is not installed there."""
    python = venv / "bin" / "python"
    if not python.exists():
        return None
    try:
        done = subprocess.run(
            [str(python), "-c", "import mlserver; print(mlserver.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def write_model_folder(folder: Path, model: str, model_path: Path, parallel_workers: int) -> None:
    """settings.json (ports filled in later by env), model-settings.json and the runtime."""
    shutil.copy(RUNTIME, folder / "runtime.py")
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "parallel_workers": parallel_workers,
        # Metrics have their own server; off, so MLServer is not measured doing extra work.
        "metrics_endpoint": None,
        "model_repository_root": str(folder),
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model_folder = folder / model
    model_folder.mkdir()
    model_settings = {
        "name": model,
        "implementation": "runtime.OnnxLeadModel",
        "parameters": {"uri": str(model_path.resolve()), "version": "1"},
    }
    (model_folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))


def _model_ready(address: str, model: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            return stub.ModelReady(
                grpc_service_pb2.ModelReadyRequest(name=model), timeout=1.0
            ).ready
        except grpc.RpcError:
            return False


def start_mlserver(
    venv: Path,
    model: str,
    model_path: Path,
    parallel_workers: int = 0,
    ready_timeout_s: float = 120.0,
) -> ServerProcess:
    """Start ``mlserver start`` in a fresh folder and wait until the model is ready."""
    mlserver = venv / "bin" / "mlserver"
    if not mlserver.exists():
        raise ServerStartError(
            f"mlserver: not installed in {venv} (run {SETUP.relative_to(HERE.parent)})"
        )
    folder = Path(tempfile.mkdtemp(prefix="leadgw-bench-mlserver-"))
    write_model_folder(folder, model, model_path, parallel_workers)
    grpc_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")},
        "MLSERVER_HTTP_PORT": str(free_port()),
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "PYTHONPATH": str(folder),
    }
    log = folder / "mlserver.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [str(mlserver), "start", str(folder)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=folder,  # MLServer writes .metrics/.envs folders into its working directory
        )
    address = f"127.0.0.1:{grpc_port}"
    server = ServerProcess("mlserver", process, address, log, scratch=folder)
    ready = wait_until(
        lambda: process.poll() is not None or _model_ready(address, model), ready_timeout_s, 0.5
    )
    if not ready or process.poll() is not None:
        code = process.poll()
        server.stop(5.0)
        why = f"exited with code {code}" if code is not None else "timed out"
        raise ServerStartError(
            f"mlserver: {why} before model {model} was ready ({ready_timeout_s:g} s): "
            f"{last_line(log)} (log: {log})"
        )
    return server
