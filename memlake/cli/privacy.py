"""`memlake export | import | erase`."""

from __future__ import annotations

import sys

from memlake.cli.format import Progress
from memlake.client import (
    MemlakeClient,
)


def _privacy_cmd(c: MemlakeClient, a) -> int:
    if a.cmd == "import":
        fh = sys.stdin if a.input == "-" else open(a.input, encoding="utf-8")  # noqa: SIM115
        with fh:
            lines = [ln for ln in fh if ln.strip()]
        bar = Progress("import", len(lines))

        def counted():
            for ln in lines:
                bar.update(1)
                yield ln

        r = c.import_subject(counted())
        bar.close()
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
        print(f"imported {kinds}; seq {r.seq}")
        return 0
    who = dict(user_id=a.user, agent_id=a.agent, tenant=a.all)
    if a.cmd == "erase":
        what = f"user {a.user}" if a.user else f"agent {a.agent}" if a.agent else "the tenant"
        if not a.yes and input(f"erase everything held about {what}? [y/N] ").lower() != "y":
            print("nothing erased")
            return 1
        r = c.erase_subject(**who)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()) if v)
        print(f"erasure job {r.job_id} done: {counts or 'nothing left to erase'}; seq {r.seq}")
        return 0
    out = sys.stdout if a.output == "-" else open(a.output, "w", encoding="utf-8")  # noqa: SIM115
    bar = Progress("export")
    try:
        for chunk in c.export_subject(**who):
            for line in chunk.lines:
                out.write(line + "\n")
            bar.update(len(chunk.lines), chunk.total_lines)
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    if a.output != "-":
        print(f"exported {bar.done} lines to {a.output}")
    return 0
