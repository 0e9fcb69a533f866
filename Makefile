# SAGIN-HIL testbed.  Every target installs what it needs first (idempotent, see
# scripts/bootstrap.sh), so on a fresh Debian 12 machine, as root:
#     make scenario NAME=quickstart
#     make test
PY      := .venv/bin/python
SETUP   := .venv/.setup-done
NAME    ?=
FILE    ?=
NODE    ?=
RUN     ?=
CMD     ?=
DURATION ?=
HOLD    ?=
BENCH   ?=
N       ?= 1
FLAVOUR ?= px4
PYTEST_ARGS ?=
ALGO    ?= all
CONFIG  ?=
SLOTS   ?=
PCAP    ?=
RUNS    ?=
INVENTORY ?=
HOSTS   ?=

VIEW    ?=
VIEW_PORT ?=
SCEN_ARGS = $(if $(FILE),--file $(FILE),$(NAME)) $(if $(DURATION),--duration $(DURATION)) $(if $(HOLD),--hold) \
	$(if $(INVENTORY),--inventory $(INVENTORY)) $(if $(HOSTS),--hosts $(HOSTS)) $(if $(VIEW),--view) $(if $(VIEW_PORT),--view-port $(VIEW_PORT))

.PHONY: setup vm-setup browser-setup vm board-vm test-boards scenario scenarios check shell exec status clean bench test lint help sitl \
	train ship-policies analyze compare view sweep hosts-sim

help:
	@echo "make scenario NAME=quickstart   build, run (~60 s), measure and tear down a scenario"
	@echo "make scenario FILE=path.yaml    run a scenario file from anywhere (DURATION=s, HOLD=1)"
	@echo "make scenario NAME=x VIEW=1     ... and watch it live in the browser (prints a 127.0.0.1 URL)"
	@echo "make view RUN=results/x/latest  replay a finished run in the browser (VIEW_PORT=8080)"
	@echo "make scenarios                  list the scenarios in topologies/"
	@echo "make check NAME=x | FILE=p      validate a scenario without running it"
	@echo "make shell NODE=uav1 [RUN=id]   shell inside a node of a running scenario"
	@echo "make exec NODE=uav1 CMD='...'   one command inside a node of a running scenario"
	@echo "make status | make clean        running scenarios | remove leftovers of killed runs"
	@echo "make bench [BENCH=fidelity]     benchmarks -> results/bench/*.json (python -m testbed bench --list)"
	@echo "make sitl N=3 [FLAVOUR=px4]     N simulated vehicles on loopback with PX4 SITL's ports"
	@echo "make train [ALGO=cmaddpg] [CONFIG=large|file]  train offloading controllers (all: ~20 min)"
	@echo "make eval-offload [CONFIG=file] [SEEDS=5]      every controller side by side + the papers' claims"
	@echo "make eval-cpn [INSTANCE=file] [SEEDS=5]        CPN service mapping: ABS vs baselines, claims, plots"
	@echo "make eval-<name> [VAR=value ...]  any workload's evaluation (python -m testbed workloads)"
	@echo "make sweep SPEC=sweeps/x.yaml [RAY_ADDRESS=h:p]  a parameter sweep as Ray tasks -> results/sweeps/<name>/ (docs/sweeps.md)"
	@echo "make scenario NAME=x HOSTS=f.yaml  one scenario split over several hosts (SSH + VXLAN; docs/multi-host.md)"
	@echo "make hosts-sim [ACTION=up|down|status]  two stand-in hosts on this machine + their hosts file"
	@echo "make analyze RUN=dir | PCAP=f   packet-trace analysis -> analysis/report.html (runs do it themselves)"
	@echo "make compare RUNS='a b'         side-by-side tables and overlaid plots of runs"
	@echo "make vm [CMD='...']             a command as root in Debian's stock kernel (netem, hwsim, OVS module) under qemu"
	@echo "make board-vm [N=2] [REPLACES='uav1 uav2'] [OFFLINE=1]  emulated arm64 boards + their inventory (ACTION=down|status)"
	@echo "make test                       the test suite (what CI runs)"
	@echo "make test-boards                the emulated-board lane (CI runs it after make test)"

setup:
	@bash scripts/bootstrap.sh

# the stock-kernel VM (qemu + Debian's linux-image-amd64) for the `kernel` tests and benches
vm-setup:
	@bash scripts/bootstrap.sh --vm

# emulated arm64 boards for the hardware path (testbed/vm/board.py): ACTION=up|down|status|build
board-vm: setup
	@bash scripts/bootstrap.sh --board
	@$(PY) -m testbed boards vm $(if $(ACTION),$(ACTION),up) $(if $(N),-n $(N)) $(if $(REPLACES),--replaces $(REPLACES)) $(if $(OFFLINE),--offline) $(if $(PACKAGES),--packages $(PACKAGES)) $(if $(AGENT_ARGS),--agent-args="$(AGENT_ARGS)")

# the emulated-board test lane (also run by .ci/run): boots one board from the cached image
test-boards: setup
	@bash scripts/bootstrap.sh --board
	@$(PY) -m pytest -q -m boards tests/test_board_vm.py

vm: vm-setup
	@$(PY) -m testbed.vm.qemu --rw results -- $(if $(CMD),$(CMD),uname -a)

sitl: setup
	@$(PY) -m firmware.sitl --count $(N) --flavour $(FLAVOUR)

scenario: setup
	@$(PY) -m testbed run $(SCEN_ARGS)

scenarios: setup
	@$(PY) -m testbed scenarios

check: setup
	@$(PY) -m testbed check --plan $(SCEN_ARGS)

shell: setup
	@$(PY) -m testbed shell $(NODE) $(if $(RUN),--run $(RUN))

exec: setup
	@$(PY) -m testbed exec $(NODE) $(CMD)

status: setup
	@$(PY) -m testbed status

clean: setup
	@$(PY) -m testbed clean

train: setup
	@$(PY) -m controllers.offload.train --algo $(ALGO) $(if $(CONFIG),--config $(CONFIG)) $(if $(SLOTS),--slots $(SLOTS))


analyze: setup
	@$(PY) -m testbed.analysis $(if $(PCAP),--pcap $(PCAP),$(RUN))

compare: setup
	@$(PY) -m testbed.analysis --compare $(RUNS)

view: setup
	@$(PY) -m testbed.view $(if $(RUN),$(RUN),results/quickstart/latest) $(if $(VIEW_PORT),--port $(VIEW_PORT))

# every workload's evaluation, found through the registry: command-line variables
# (SEEDS=3 CONFIG=x ...) become the eval's flags (testbed/workloads.py Eval.make_vars)
eval-%: setup
	@$(PY) -m testbed eval $* $(MAKEOVERRIDES)

# a parameter sweep (testbed/sweep, docs/sweeps.md): runs as Ray tasks, on a local Ray started
# and stopped here or on the cluster at RAY_ADDRESS; rerunning resumes it
sweep: setup
	@$(PY) -m testbed sweep $(if $(SPEC),$(SPEC),sweeps/quickstart-satdelay.yaml) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS)) $(if $(DRY_RUN),--dry-run)

# stand-in hosts for multi-host runs (testbed/cluster/standin.py): namespaces with a real sshd
hosts-sim: setup
	@$(PY) -m testbed hosts sim $(if $(ACTION),$(ACTION),up)

# regenerate the policies shipped in the repository: default preset, and 10k slots on large
ship-policies: setup
	@$(PY) -m controllers.offload.train --algo all --out controllers/offload/policies --quiet --acting-only
	@for a in muecrs cmaddpg maddpg ddpg; do $(PY) -m controllers.offload.train --algo $$a --config large --slots 10000 --out controllers/offload/policies --quiet --acting-only; done

bench: setup
	@$(if $(RUNS),SAGIN_BENCH_RUNS=$(RUNS) )$(PY) -m testbed bench $(BENCH)

lint: setup
	@.venv/bin/ruff check testbed controllers payloads firmware tests

# headless Chromium for the live view's browser tests (Debian's package)
browser-setup: setup
	@bash scripts/bootstrap.sh --browser

test: setup vm-setup browser-setup
	@.venv/bin/ruff check testbed controllers payloads firmware tests
	@$(PY) -m pytest $(PYTEST_ARGS)
