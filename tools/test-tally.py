#!/usr/bin/env python3
"""Counts test cases (not test binaries) in a meson testlog.json.

gtest binaries report "[  PASSED  ] N tests." and "[  FAILED  ] N tests, listed below"; a binary
that crashed or timed out before its summary counts as one failure; a script test counts as one
case; a skipped script counts as skipped, never as passed. Prints 'N passed, N failed' (and
', N skipped' when any) and exits 1 when anything failed or nothing ran.
"""
import json
import re
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            entry = json.loads(line)
            out = entry.get("stdout", "") or ""
            p = re.findall(r"^\[  PASSED  \] (\d+) tests?\.", out, re.M)
            f = re.findall(r"^\[  FAILED  \] (\d+) tests?, listed below", out, re.M)
            case_pass = sum(map(int, p))
            case_fail = sum(map(int, f))
            result = entry.get("result")
            ok = result in ("OK", "EXPECTEDFAIL", "SKIP")
            if result == "SKIP" and not p and not f:
                skipped += 1
                continue
            if not p and not f:
                # Not a gtest binary (or it died before its summary): count the test itself.
                case_pass, case_fail = (1, 0) if ok else (0, 1)
            elif not ok and case_fail == 0:
                case_fail = 1
            passed += case_pass
            failed += case_fail
print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
sys.exit(1 if failed or passed == 0 else 0)
