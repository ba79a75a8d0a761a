"""Client threads looping ScoreLeads against a gateway, recording every call's status."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from gateway import lead_codec
from leadgw_client.pb.leadgw.v1 import lead_service_pb2 as pb
from leadgw_client.pb.leadgw.v1 import lead_service_pb2_grpc as pb_grpc
from runtimes.training import synth


def score_request(n: int, seed: int) -> pb.ScoreLeadsRequest:
    leads = synth.generate(n, seed).leads(f"chaos-{seed}-")
    return pb.ScoreLeadsRequest(leads=[lead_codec.lead_to_pb(lead) for lead in leads])


@dataclass
class ScoreLoad:
    """``threads`` clients, each on a connection of its own, looping ScoreLeads until stopped,
    for at most ``max_calls`` calls each."""

    address: str
    threads: int = 16
    max_calls: int = 5_000
    timeout_s: float = 20.0
    statuses: Counter[str] = field(default_factory=Counter)
    details: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(i,), daemon=True)
            thread.start()
            self._workers.append(thread)

    def wait_for_calls(self, total: int, limit_s: float = 60.0) -> None:
        """Until ``total`` calls have been answered OK (so the load is really flowing)."""
        deadline = time.monotonic() + limit_s
        while self.count("OK") < total:
            if time.monotonic() > deadline:
                raise AssertionError(f"load never got going: {dict(self.statuses)}")
            time.sleep(0.05)

    def count(self, status: str) -> int:
        with self._lock:
            return self.statuses[status]

    def stop(self) -> Counter[str]:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=self.timeout_s + 10)
        return self.statuses

    def _record(self, status: str, detail: str = "") -> None:
        with self._lock:
            self.statuses[status] += 1
            self.details.setdefault(status, detail)

    def _loop(self, index: int) -> None:
        request = score_request(1 + index % 4, seed=index)
        # A connection of its own per thread (not grpc's process-wide subchannel pool), so the
        # kernel spreads the threads across the workers of a multi-process gateway.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(self.address, options=options) as channel:
            stub = pb_grpc.LeadServiceStub(channel)
            for _ in range(self.max_calls):
                if self._stop.is_set():
                    return
                try:
                    stub.ScoreLeads(request, timeout=self.timeout_s)
                except grpc.RpcError as error:
                    self._record(error.code().name, error.details() or "")
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        time.sleep(0.01)  # the server is going: do not spin
                else:
                    self._record("OK")
