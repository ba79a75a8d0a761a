"""A gateway without an LLM endpoint never imports the openai package: it is the slowest import
of a gateway's start (measured: a third of each process's import time), paid by the supervisor
and by every worker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_gateway_modules_load_without_openai() -> None:
    loaded = _modules_after("import gateway.workers, gateway.server, runtimes.llm")
    assert "gateway.server" in loaded and "runtimes.llm.client" in loaded
    assert not {m for m in loaded if m == "openai" or m.startswith("openai.")}


def test_an_llm_client_loads_openai_when_it_is_made() -> None:
    code = (
        "from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig\n"
        "LLMClient(LLMConfig(base_url='http://127.0.0.1:9/v1', model='m', api_key='k'),"
        " breaker=CircuitBreaker(3, 5.0))"
    )
    assert "openai" in _modules_after(code)


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_warm_loads_before_serving_what_the_first_stream_would_load_on_the_loop(
    http_client: str,
) -> None:
    """The openai client imports anyio's loop backend on its first call, whichever its transport:
    in a worker that is the event loop, between other callers' requests. ``warm()`` (run before
    serving) takes it on then."""
    make = (
        "import asyncio\n"
        "from runtimes.llm import CircuitBreaker, LLMClient, LLMConfig\n"
        "client = LLMClient(LLMConfig(base_url='http://127.0.0.1:9/v1', model='m', api_key='k',"
        f" http_client={http_client!r}),"
        " breaker=CircuitBreaker(3, 5.0))\n"
    )
    first_call = {"anyio._backends._asyncio"}
    assert not first_call & _modules_after(make)
    assert first_call <= _modules_after(make + "asyncio.run(client.warm())")
