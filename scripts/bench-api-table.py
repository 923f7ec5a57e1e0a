"""Ratios of the reports scripts/bench-api-pair.sh wrote: python3 scripts/bench-api-table.py OUTDIR."""
import json, sys, glob, os
d = sys.argv[1]
rows = []
for f in sorted(glob.glob(os.path.join(d, "*.tmc.json"))):
    tag = os.path.basename(f)[:-len(".tmc.json")]
    t = json.load(open(f)); k = json.load(open(f.replace(".tmc.", ".kas.")))
    r = lambda a, b: a / b if b else float("nan")
    print(f"{tag}: creates/s {t['create']['per_s']:.0f} vs {k['create']['per_s']:.0f} ({r(t['create']['per_s'], k['create']['per_s']):.2f}); "
          f"get p99 {t['get']['p99_ms']:.1f} vs {k['get']['p99_ms']:.1f} ({r(t['get']['p99_ms'], k['get']['p99_ms']):.2f}); "
          f"list p50 {t['list']['p50_ms']:.1f} vs {k['list']['p50_ms']:.1f} ({r(t['list']['p50_ms'], k['list']['p50_ms']):.2f}); "
          f"watch start {t['watch']['established_s']:.2f} vs {k['watch']['established_s']:.2f} s ({r(t['watch']['established_s'], k['watch']['established_s']):.2f}); "
          f"delivery p50/p99 {t['watch']['p50_ms']:.1f}/{t['watch']['p99_ms']:.1f} vs {k['watch']['p50_ms']:.1f}/{k['watch']['p99_ms']:.1f}; "
          f"errors {t['create']['errors']+t['get']['errors']+t['watch']['watch_errors']+t['watch']['events_missing']}/{k['create']['errors']+k['get']['errors']+k['watch']['watch_errors']+k['watch']['events_missing']}; "
          f"load {t['loadavg_start']} -> {k['loadavg_end']}")
