"""Wait until a local OpenAI-compatible server answers a chat completion (stdlib only; run by
scripts/llm-local.sh). Exit 0 when it did, 1 when the server process died or time ran out.

Usage: llm_local_ready.py BASE_URL MODEL PID [TIMEOUT_S]"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _completion(base_url: str, model: str) -> str:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 4,
            "temperature": 0,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/chat/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    return str(answer["choices"][0]["message"]["content"])


def main() -> int:
    base_url, model, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout_s = float(sys.argv[4]) if len(sys.argv) > 4 else 300.0
    until = time.monotonic() + timeout_s
    while time.monotonic() < until:
        if not _alive(pid):
            print("llm-local: the server process exited", file=sys.stderr)
            return 1
        try:
            text = _completion(base_url, model)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)  # not listening yet, or loading the model
            continue
        except (KeyError, IndexError, ValueError) as err:
            print(f"llm-local: unexpected completion answer: {err!r}", file=sys.stderr)
            return 1
        print(f"llm-local: first completion answered: {text!r}", file=sys.stderr)
        return 0
    print("llm-local: no completion answered in time", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
