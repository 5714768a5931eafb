#!/usr/bin/env python3
"""Turns scripts/bench's JSON lines into the im-bench section of docs/BENCHMARKS.md.

usage: bench-report.py RESULTS.jsonl RUNS DOC.md COMMANDS.txt
Replaces the text between '<!-- im-bench:begin -->' and '<!-- im-bench:end -->' in DOC.md
(appends the section when the markers are missing) and prints nothing else.
"""
import json
import re
import os
import platform
import statistics
import subprocess
import sys

BEGIN, END = "<!-- im-bench:begin -->", "<!-- im-bench:end -->"

# (label, metric, unit, target text, predicate on the median or None)
ROWS = [
    ("pairs P=1 W=1", "delivered_msgs_s", "msgs/s", "", None),
    ("pairs P=1 W=1", "ttd_p50_us", "us", "p50 <= 500 us", lambda v: v <= 500),
    ("pairs P=1 W=1", "ttd_p99_us", "us", "", None),
    ("pairs P=1 W=16", "delivered_msgs_s", "msgs/s", "", None),
    ("pairs P=50 W=1", "delivered_msgs_s", "msgs/s", "", None),
    ("pairs P=50 W=16", "delivered_msgs_s", "msgs/s", ">= 40,000", lambda v: v >= 40000),
    ("pairs P=50 W=16", "ttd_p50_us", "us", "", None),
    ("pairs P=50 W=16", "ttd_p99_us", "us", "", None),
    ("pairs P=500 W=1", "delivered_msgs_s", "msgs/s", ">= 25,000", lambda v: v >= 25000),
    ("pairs P=500 W=1", "ttd_p50_us", "us", "(Little's law: 1000 in flight / rate)", None),
    ("pairs P=500 W=1", "ttd_p99_us", "us", "", None),
    ("pairs P=500 W=16", "delivered_msgs_s", "msgs/s", "", None),
    ("open P=500 R=10000", "delivered_msgs_s", "msgs/s", "10,000 offered", None),
    ("open P=500 R=10000", "ttd_p50_us", "us", "", None),
    ("open P=500 R=10000", "ttd_p99_us", "us", "p99 <= 5 ms", lambda v: v <= 5000),
    ("open P=500 R=10000", "ttd_p99_9_us", "us", "p99.9 <= 20 ms", lambda v: v <= 20000),
    ("open P=500 R=10000", "sent_ack_p50_us", "us", "", None),
    ("open P=500 R=10000", "delivered_receipt_p99_us", "us", "", None),
    ("idle", "connect_login_all_s", "s", "<= 10 s", lambda v: v <= 10),
    ("idle", "connector_rss_per_session_bytes", "bytes", "<= 4096", lambda v: v <= 4096),
    ("idle", "connector_idle_cpu_pct", "% of a core", "<= 5 %", lambda v: v <= 5),
    ("login", "session_establishments_s", "/s", ">= 5,000", lambda v: v >= 5000),
    ("login", "session_login_p99_us", "us", "", None),
    ("login", "rest_logins_s", "/s", "(cheap hash: bench setting)", None),
    ("login", "rest_login_p99_us", "us", "", None),
    ("offline", "stored_msgs_s", "msgs/s", ">= 20,000", lambda v: v >= 20000),
    ("offline", "synced_msgs_s", "msgs/s", ">= 50,000", lambda v: v >= 50000),
]
CORRECTNESS = ["lost", "duplicated", "out_of_order"]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, Linux {platform.release()}"


def profile(label, path):
    """One JSON line of per-message costs from the raw profile file written by scripts/bench."""
    snap = {"t0": {}, "t1": {}, "m0": {}, "m1": {}}
    perf = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 1)
            if len(parts) != 2:
                continue
            tag, rest = parts
            if tag in ("t0", "t1"):
                k, _, v = rest.rpartition(" ")
                snap[tag][k] = float(v)
            elif tag in ("m0", "m1"):
                k, _, v = rest.partition("\t")
                snap[tag][k] = float(v)
            elif tag == "perf":
                name, _, csv = rest.partition(" ")
                cols = csv.split(",")
                if len(cols) > 2 and cols[0] not in ("", "<not counted>", "<not supported>"):
                    perf.setdefault(name, {})[cols[2]] = float(cols[0])

    def d(tag, key):
        return snap[tag[0] + "1"].get(key, 0) - snap[tag[0] + "0"].get(key, 0)

    msgs = d("t", "im_transfer_messages_stored_total")
    out = {"label": label, "messages": msgs}
    if msgs <= 0:
        print(json.dumps(out))
        return
    batches = d("t", "im_transfer_batches_total")
    out["messages_per_batch"] = round(msgs / batches, 1) if batches else None
    out["receipts_per_message"] = round(d("t", "im_transfer_receipts_total") / msgs, 2)
    stages = {}
    for k in snap["t1"]:
        if k.startswith("im_transfer_writer_stage_seconds_total"):
            stage = k.split('stage="', 1)[1].split('"', 1)[0]
            stages[stage] = round(d("t", k) * 1e6 / msgs, 2)
    out["writer_us_per_message"] = stages
    out["mysql_statements_per_message"] = round(d("m", "Questions") / msgs, 3)
    out["mysql_commits_per_message"] = round(d("m", "Com_commit") / msgs, 3)
    out["innodb_fsyncs_per_message"] = round(d("m", "Innodb_data_fsyncs") / msgs, 3)
    procs = {}
    for name, ev in perf.items():
        procs[name] = {
            "cpu_us": round(ev.get("task-clock", 0) * 1000 / msgs, 2),
            "syscalls": round(ev.get("raw_syscalls:sys_enter", 0) / msgs, 2),
            "context_switches": round(ev.get("context-switches", 0) / msgs, 2),
        }
    out["per_process_per_message"] = procs
    print(json.dumps(out))


def main():
    if sys.argv[1] == "--profile":
        profile(sys.argv[2], sys.argv[3])
        return
    results, runs, doc, commands = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    profiles = []
    if len(sys.argv) > 5 and os.path.exists(sys.argv[5]):
        with open(sys.argv[5]) as f:
            profiles = [json.loads(l) for l in f if l.strip().startswith("{")]
    by_label = {}
    with open(results) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            by_label.setdefault(r["label"], []).append(r)

    def label_of(prefix):
        for k in by_label:
            if k == prefix or k.startswith(prefix + " "):
                return k
        return None

    flush = {r.get("mysql_innodb_flush_log_at_trx_commit") for rs in by_label.values() for r in rs}
    out = [BEGIN, "", "## Messaging: im-bench (issue 5)", ""]
    out.append(f"Machine: {machine()}. Everything on this one box: Redis, MariaDB, RabbitMQ, slapd, im-rest, "
               "one im-transfer, two im-connectors and the generator. MariaDB "
               f"`innodb_flush_log_at_trx_commit` = {', '.join(sorted(str(x) for x in flush))} (read from the server "
               "by scripts/bench and printed in every report): every message is committed durably before its SENT. "
               "Receipts on, 100-byte bodies.")
    out.append("")
    out.append(f"Produced by `./scripts/bench` ({runs} runs of every scenario; the median is in bold). "
               "The generator runs on one I/O thread.")
    out.append("")
    head = "| scenario | metric | " + " | ".join(f"run {i + 1}" for i in range(runs)) + " | median | target | met |"
    out.append(head)
    out.append("|" + "---|" * (runs + 5))
    for label, metric, unit, target, pred in ROWS:
        key = label_of(label)
        vals = [r.get(metric) for r in by_label.get(key, [])] if key else []
        vals = [v for v in vals if isinstance(v, (int, float))]
        med = statistics.median(vals) if vals else None
        cells = [fmt(v) for v in vals] + ["-"] * (runs - len(vals))
        met = "" if pred is None or med is None else ("yes" if pred(med) else "**no**")
        out.append(f"| {key or label} | {metric} ({unit}) | " + " | ".join(cells[:runs]) +
                   f" | **{fmt(med)}** | {target} | {met} |")
    out.append("")
    out.append("Correctness in every run (sum over all runs of every scenario):")
    out.append("")
    out.append("| scenario | runs | " + " | ".join(CORRECTNESS) + " | send errors |")
    out.append("|---|---|" + "---|" * (len(CORRECTNESS) + 1))
    for label, rs in by_label.items():
        sums = [sum(r.get(k, 0) for r in rs) for k in CORRECTNESS]
        errs = sum(r.get("send_errors", 0) for r in rs)
        if any(k in rs[0] for k in CORRECTNESS):
            out.append(f"| {label} | {len(rs)} | " + " | ".join(str(s) for s in sums) + f" | {errs} |")
    out.append("")
    out.append("CPU seconds during the measured interval (median run), per process:")
    out.append("")
    for label in ("pairs P=50 W=16", "pairs P=500 W=1", "open P=500 R=10000"):
        key = label_of(label)
        if not key:
            continue
        rs = by_label[key]
        rs_sorted = sorted(rs, key=lambda r: r.get("delivered_msgs_s", 0))
        r = rs_sorted[len(rs_sorted) // 2]
        cpu = {k[4:-2]: v for k, v in r.items() if k.startswith("cpu_") and k.endswith("_s") and k != "cpu_interval_s"}
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
        out.append(f"- {key} ({r.get('cpu_interval_s', 0):.1f} s): {parts}")
    out.append("")
    if profiles:
        out.append("### Where the time goes (per message, profiled by scripts/bench)")
        out.append("")
        out.append("A 4-second window in the middle of one run per scenario: CPU time, system calls and context "
                   "switches per process from `perf stat`, MariaDB statements, commits, rows and fsyncs from "
                   "`SHOW GLOBAL STATUS`, and the transfer writer's time per stage from its metrics "
                   "(`im_transfer_writer_stage_seconds_total`, summed over the writer lanes), all divided by the "
                   "messages stored in the window.")
        out.append("")
        names = sorted({n for p in profiles for n in p.get("per_process_per_message", {})})
        out.append("| per message | " + " | ".join(p["label"] for p in profiles) + " |")
        out.append("|---|" + "---|" * len(profiles))
        def row(title, get):
            out.append(f"| {title} | " + " | ".join(str(get(p)) for p in profiles) + " |")
        row("messages in the window", lambda p: int(p.get("messages", 0)))
        row("messages per writer batch", lambda p: p.get("messages_per_batch"))
        row("receipts per message", lambda p: p.get("receipts_per_message"))
        row("MySQL statements", lambda p: p.get("mysql_statements_per_message"))
        row("MySQL commits", lambda p: p.get("mysql_commits_per_message"))
        row("InnoDB fsyncs", lambda p: p.get("innodb_fsyncs_per_message"))
        stages = sorted({s for p in profiles for s in p.get("writer_us_per_message", {})})
        for st in stages:
            row(f"writer {st} (us)", lambda p, st=st: p.get("writer_us_per_message", {}).get(st, "-"))
        for n in names:
            row(f"{n} CPU (us)", lambda p, n=n: p.get("per_process_per_message", {}).get(n, {}).get("cpu_us", "-"))
        for n in names:
            row(f"{n} syscalls", lambda p, n=n: p.get("per_process_per_message", {}).get(n, {}).get("syscalls", "-"))
        row("total CPU (us)", lambda p: round(sum(v.get("cpu_us", 0) for v in p.get("per_process_per_message", {}).values()), 1))
        out.append("")
    out.append("Commands (as run by scripts/bench; `COMMON` = `--rest URL --connectors A,B --tokens FILE --watch "
               "RUN_DIRS --mysql-flush V --json-out FILE`):")
    out.append("")
    out.append("```")
    with open(commands) as f:
        seen = []
        for line in f:
            if line.strip() and line not in seen:
                seen.append(line)
    out.extend(re.sub(r"--connector-pid \d+", "--connector-pid PID", l.rstrip("\n")) for l in seen
               if not re.search(r"--connector-pid \d+", l) or l == next(x for x in seen if "--connector-pid" in x))
    out.append("```")
    out.append("")
    out.append(END)

    section = "\n".join(out) + "\n"
    try:
        with open(doc) as f:
            text = f.read()
    except OSError:
        text = "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        a = text.index(BEGIN)
        b = text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(doc + ".new", "w") as f:
        f.write(text)
    os.replace(doc + ".new", doc)


if __name__ == "__main__":
    main()
