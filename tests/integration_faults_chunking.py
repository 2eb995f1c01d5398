#!/usr/bin/python3
"""tests/integration_faults.py once more, with tests/faultsmtp.py
advertising PIPELINING and CHUNKING: herald sends MAIL, RCPT and BDAT LAST
with the message as one group (RFC 3030). Every fault, every
assertion: exactly once across the fault and the rerun.

    HERALD=/path/to/herald /usr/bin/python3 tests/integration_faults_chunking.py [PATTERN...]
"""
import os
import runpy
import sys

os.environ["HERALD_TEST_EXTENSIONS"] = "pipelining,chunking"
sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration_faults.py")
runpy.run_path(sys.argv[0], run_name="__main__")
