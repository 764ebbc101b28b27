"""Requests for one advised round when every JSON answer carries a trailing comma (issue 21, "JSON that costs one call").

Runs ``data-advisor generate --advice llm --n 12`` (one round: one advisor call, three generator calls) in a
subprocess against the local OpenAI-compatible test server, whose cooperative model writes every JSON answer with
trailing commas, the slip small models make most.  Counts the chat requests, the share that carried a
``response_format``, and the exit status.  The package measured is whichever ``data_advisor`` the subprocess imports
(``PYTHONPATH``), so the same script measures the code before and after a change.

    python benchmarks/llm_json_round.py [--label NAME] [--out benchmarks/results/llm_json_round.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.advisor.conftest import LoopResponder, fresh_llm_cache_root  # noqa: E402
from tests.llm.llm_server import LLMServer, Reply, malformed_json  # noqa: E402

CLI = ("import sys, data_advisor; from data_advisor.cli import main; "
       "print('package:', data_advisor.__file__, file=sys.stderr); sys.exit(main(sys.argv[1:]))")


def measure(package_path: str) -> dict[str, Any]:
    """One CLI run against a fresh server; the request count, response_format share and exit status."""
    responder = LoopResponder()

    def with_trailing_commas(req: dict[str, Any], kind: str, n: int) -> Reply | str | None:
        base = kind.split(":")[-1]
        if base not in ("advisor", "generate"):
            return None
        if kind.startswith("repair:"):  # a repair request: answer the original question again, the same way
            first_user = next(m for m in req["messages"] if m.get("role") == "user")
            req = {**req, "messages": [first_user]}
        answer = responder.answer(req, base)
        return malformed_json(json.loads(answer), "trailing_comma") if isinstance(answer, str) else answer

    responder.fault = with_trailing_commas
    with LLMServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.responder = responder
        env = {**os.environ, "PYTHONPATH": package_path, "OPENAI_API_KEY": "sk-bench-0000000000000000",
               "DATA_ADVISOR_CACHE": str(fresh_llm_cache_root(Path(tmp) / "cache"))}
        args = ["generate", "--taxonomy", "catqa-11", "--model", "openai/gpt-4o-mini", "--api-base", server.base_url,
                "--advice", "llm", "--n", "12", "--out", str(Path(tmp) / "run"), "--seed", "1", "-q"]
        proc = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=tmp, capture_output=True, text=True,
                              timeout=900, check=False)
        requests = server.chat_requests
    with_format = sum(1 for r in requests if isinstance(r.body, dict) and r.body.get("response_format"))
    notes = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith(("package:", "error:"))]
    return {"exit_status": proc.returncode, "requests": len(requests), "with_response_format": with_format,
            "kinds": dict(responder.kinds), "package": package_path, "stderr": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--package-path", default=str(REPO), help="where the data_advisor package measured lives")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "llm_json_round.json")
    args = parser.parse_args()
    result = {"label": args.label, **measure(args.package_path)}
    print(json.dumps(result, indent=2))
    existing = json.loads(args.out.read_text("utf-8")) if args.out.is_file() else {}
    existing[args.label] = result
    args.out.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
