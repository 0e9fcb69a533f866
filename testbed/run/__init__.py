"""One run of a scenario, start to finish, and what it leaves in results/.

* runner - `Run`: plan -> network -> workload services -> health -> captures/probes -> time
  zero -> timeline -> metrics -> teardown, whatever happens.
* harness - `emulated()`: a built, health-checked network as a context manager, for benches
  and tests that drive the emulation themselves.
* timeline - the scenario's events on time (link changes, moves, crashes, exec, flows).
* traffic, probes, capture - iperf3/ping flows, fping link probes, tcpdump per link end.
* metrics, summary, results - metrics.json, the console tables, the run folder and manifest.
* cleanup - the ledger walk: teardown at the end of a run and `make clean` after a crash.
"""
