#!/usr/bin/env bash
# Mutation testing of workflow/, the lawful core (DESIGN's standard: mutmut kills ≥ 95 % of its mutants).
# Not part of the test command: ≈3,700 mutants take 30–70 minutes on two cores. Prints the score and exits 1
# below the threshold. MUTMUT_CHILDREN (default: the CPU count) runs mutants side by side.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
.venv/bin/python -m pip install --quiet -e ".[mutation]"
rm -rf mutants  # mutmut reuses earlier results for unchanged functions; a fresh run judges every mutant
.venv/bin/mutmut run --max-children "${MUTMUT_CHILDREN:-$(nproc)}"
.venv/bin/mutmut export-cicd-stats >/dev/null
.venv/bin/python - <<'PY'
import json, sys
stats = json.load(open("mutants/mutmut-cicd-stats.json"))
# A timeout is a mutant the tests stopped (an endless loop): killed. "not checked": no test reaches the line.
killed = stats["killed"] + stats["timeout"]
judged = killed + stats["survived"] + stats.get("no_tests", 0) + stats.get("suspicious", 0)
score = 100 * killed / judged if judged else 0.0
print(f"workflow/ mutation score: {score:.1f} % ({killed} of {judged} mutants killed; "
      f"{stats['survived']} survived — `.venv/bin/mutmut results` lists them, `mutmut show NAME` shows one)")
sys.exit(0 if score >= 95 else 1)
PY
