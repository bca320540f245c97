"""The query path's OpenMP wait policy (``device.query_process``): set for ``prvr search`` and
``prvr serve`` before torch is imported, never over a policy the user set."""

import json
import os
import subprocess
import sys

from prvr_cli.device import QUERY_ENV, query_process

PROBE = r"""
import json, os, sys
import prvr_cli.device as device
seen = []
real = device.query_process
def spy():
    seen.append("torch" in sys.modules)  # imported before the policy was set: it would not apply
    return real()
device.query_process = spy
from prvr_cli.cli.app import app
try:
    app([*sys.argv[1:]], standalone_mode=False)
except BaseException:
    pass  # the index does not exist: only what happened before that matters here
print(json.dumps({"torch_before": seen, "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _probe(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | (env_extra or {})
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_query_process_sets_the_policy_and_keeps_the_users(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    query_process()
    assert os.environ["OMP_WAIT_POLICY"] == QUERY_ENV["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    query_process()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_query_process_says_whether_it_applies_here():
    import torch  # noqa: F401  (imported: libgomp has read its settings already)

    assert query_process() is False


def test_search_and_serve_set_it_before_torch_is_imported(tmp_path):
    missing = str(tmp_path / "no-index")
    for args in (["search", "--index", missing, "a query"], ["serve", missing]):
        got = _probe(args)
        assert got == {"torch_before": [False], "policy": "PASSIVE"}, args
    assert _probe(["search", "--index", missing, "q"], {"OMP_WAIT_POLICY": "ACTIVE"})["policy"] == "ACTIVE"
    # a batch (--queries) keeps OpenMP's default: its long products gain from threads kept ready
    lines = tmp_path / "queries.txt"
    lines.write_text("a query\n")
    assert _probe(["search", "--index", missing, "--queries", str(lines)]) == {"torch_before": [], "policy": None}
