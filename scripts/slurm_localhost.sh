#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for `pytest -m slurm` (issue #15.4).
#
# Installs slurm-wlm + munge when missing (Debian/Ubuntu, root), writes /etc/slurm/slurm.conf
# for one node sized from `slurmd -C`, starts munged, slurmctld and slurmd, and waits until
# `sinfo` shows the node idle. Idempotent: a second run with the cluster up only checks it.
# Without accounting (accounting_storage/none) submitit warns that sacct is unavailable and
# reads job states from squeue instead; nothing else is missing for sbatch and job arrays.
#
#   sudo bash scripts/slurm_localhost.sh      # then: .venv/bin/python -m pytest -m slurm
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}

log() { echo "slurm_localhost: $*"; }
die() { echo "slurm_localhost: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (it installs packages and starts system daemons)"

node_state() { timeout 5 sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null | head -n1 || true; }

if command -v sinfo >/dev/null && [ "$(node_state)" = idle ]; then
  log "already up: $(sinfo -h -N -o '%N %t %c CPUs %m MB' | head -n1)"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null; }
fi

# munge: one key shared by controller and node (the package usually creates it)
if [ ! -s /etc/munge/munge.key ]; then
  log "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then mungekey --create --force; else create-munge-key -f; fi
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge /var/lib/munge /var/log/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 10); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi

# slurm.conf: one node, its CPUs and memory as slurmd itself measures them
HOST=$(hostname -s)
NODE_LINE=$(slurmd -C | head -n1)  # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >"$CONF.new" <<EOF
# Written by scripts/slurm_localhost.sh: a single-node test cluster on localhost.
ClusterName=localhost
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=5
MinJobAge=60
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if ! cmp -s "$CONF.new" "$CONF"; then
  mv "$CONF.new" "$CONF"
  log "wrote $CONF"
  CHANGED=1
else
  rm "$CONF.new"
  CHANGED=0
fi

if pgrep -x slurmctld >/dev/null; then
  [ "$CHANGED" = 1 ] && scontrol reconfigure || true
else
  log "starting slurmctld"
  slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
  log "starting slurmd"
  slurmd
fi

for _ in $(seq "$WAIT_S"); do
  state=$(node_state)
  case "$state" in
    idle) log "up: $(sinfo -h -N -o '%N %t %c CPUs %m MB' | head -n1)"; exit 0 ;;
    down*|drain*|drng*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 1
done
die "node not idle after ${WAIT_S}s (state: '$(node_state)'); see /var/log/slurm/slurmctld.log and slurmd.log"
