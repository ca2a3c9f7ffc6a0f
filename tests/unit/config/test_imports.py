"""Config sits below the pipelines: validating it loads no span or message pipeline code."""

from __future__ import annotations

import subprocess
import sys


def test_config_validation_imports_no_pipeline_module() -> None:
    code = (
        "import sys, agent.config.validate; "
        "print(sorted(m for m in sys.modules if m.startswith(('agent.spans', 'agent.messages'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "['agent.messages', 'agent.messages.topics']"
