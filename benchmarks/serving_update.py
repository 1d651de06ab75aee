# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Requests through the gateway while update_model.yml switches revisions, and a rollback after
a crash, on the Debian 12 stand-in: the molecule scenario serving_update measures them (it runs
benchmarks/load_generator.py on the host during the update) and writes
benchmarks/results/serving_update.json; this script runs that scenario and prints the figures.

    python benchmarks/serving_update.py            # about 15 minutes on 2 cores
    python benchmarks/serving_update.py --show     # print the last figures only
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "serving_update.json")


def show():
    with open(RESULTS, encoding="utf-8") as handle:
        figures = json.load(handle)
    update = figures.get("update_under_load", {})
    for phase in ("before", "during", "after"):
        stats = update.get("phases", {}).get(phase, {})
        print("%-7s sent %4s failed %3s p50 %6ss p99 %6ss  %s" % (
            phase, stats.get("sent"), stats.get("failed"), stats.get("p50_s"), stats.get("p99_s"),
            stats.get("instances")))
    print("update playbook %ss, switch gap %ss" % (update.get("update_playbook_s"),
                                                   update.get("switch", {}).get("gap_s")))
    rollback = figures.get("crash_then_rollback", {})
    print("crash -> first answer after rollback %ss (rollback.yml %ss)" % (
        rollback.get("crash_to_first_answer_s"), rollback.get("rollback_playbook_s")))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--show", action="store_true", help="print the last figures without measuring")
    args = parser.parse_args()
    if not args.show:
        proc = subprocess.run([os.path.join(ROOT, "scripts", "molecule.sh"), "debian12", "serving_update"],
                              cwd=ROOT, check=False)
        if proc.returncode != 0:
            return proc.returncode
    return show()


if __name__ == "__main__":
    sys.exit(main())
