"""What trackio holds for a run, read back from its own storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def tracked(trackio_dir, project: str, run: str) -> list[dict]:
    """What trackio holds for one run, read from its local project in a fresh process (TRACKIO_DIR is read
    at import)."""
    code = (
        "import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
        "print(json.dumps(SQLiteStorage.get_logs(sys.argv[1], sys.argv[2]), default=str))"
    )
    env = {**os.environ, "TRACKIO_DIR": str(trackio_dir)}
    out = subprocess.run([sys.executable, "-c", code, project, run], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
