"""Calls ``tritonclient.grpc``'s ``load_model`` / ``unload_model`` on a gateway; prints JSON.

Run in its own process: tritonclient registers Triton's ``inference`` protos in the default
descriptor pool, which clash with leadgw's generated ones in the test process.
Usage: python tritonclient_control.py HOST:PORT API_KEY ACTION:MODEL [ACTION:MODEL ...]
(ACTION is load or unload; API_KEY may be "-" for none.)
"""

from __future__ import annotations

import json
import sys

import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main(address: str, api_key: str, calls: list[str]) -> list[str]:
    client = triton.InferenceServerClient(url=address)
    headers = None if api_key == "-" else {"authorization": f"Bearer {api_key}"}
    results = []
    for call in calls:
        action, _, model = call.partition(":")
        method = client.load_model if action == "load" else client.unload_model
        try:
            method(model, headers=headers)
        except InferenceServerException as exc:
            results.append(f"{exc.status()}|{exc.message()}")
            continue
        results.append("OK")
    return results


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
