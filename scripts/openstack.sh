#!/bin/bash
# A real OpenStack on 127.0.0.1 for the tests: Keystone, Glance, Placement, Neutron and Nova
# (fake virt driver: servers go ACTIVE without a VM) from Debian 12's packages, on MariaDB and
# RabbitMQ of their own. Everything lives in one directory; nothing listens beyond loopback.
# Recipe and measurements: docs/providers/openstack.md ("The test cloud").
#
#   scripts/openstack.sh install        the Debian packages (idempotent; starts no daemon)
#   scripts/openstack.sh up DIR         configures and starts everything in DIR; prints DIR/cloud.json
#   scripts/openstack.sh status DIR     which of its processes run (exit 1 if any is missing)
#   scripts/openstack.sh down DIR       stops every process it started (exit 1 if one survives)
#   scripts/openstack.sh stop DIR SVC   stops one service (fault tests), `start DIR SVC` starts it again
#
# DIR/cloud.json: the endpoints and the credentials of the admin and of a member user of a
# project `hatchery` (fresh random passwords per `up`; DIR is mode 700). Ports are fixed (the
# services find each other through Keystone's catalog): 3306, 4369, 5000, 5672, 8774, 8778,
# 9292, 9696, 25672 — `up` refuses to start if one is taken.
set -euo pipefail

PACKAGES="mariadb-server rabbitmq-server python3-keystone python3-nova python3-glance python3-placement
  python3-neutron python3-pymysql uwsgi-core uwsgi-plugin-python3 curl jq"
# pyenv or a venv may come first on PATH: the services are Debian's, in Debian's Python.
PY=/usr/bin/python3
HOST=127.0.0.1
REGION=RegionOne
SERVICES="mariadb epmd rabbitmq keystone placement glance neutron nova-api nova-conductor nova-scheduler nova-compute"

die() {
  echo "openstack.sh: $*" >&2
  exit 1
}
log() { echo "==> $*" >&2; }

install_packages() {
  local missing="" p
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
  done
  [ -n "$missing" ] || [ -n "$(dpkg --audit 2>/dev/null)" ] || return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  # MariaDB's and RabbitMQ's postinst would start the system's daemons: we run our own.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    policy=1
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  [ -z "$(dpkg --audit 2>/dev/null)" ] || DEBIAN_FRONTEND=noninteractive $sudo dpkg --configure -a --force-confold
  if [ -n "$missing" ]; then
    log "installing Debian packages:$missing"
    $sudo apt-get update -q
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confold $missing
  fi
  [ -z "$policy" ] || {
    $sudo rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  }
}

# ---------------------------------------------------------------------------------------------
# Processes: each runs under setsid, so its PID is its process group; DIR/run/SVC.pid holds it.

start_proc() { # SVC ENV... -- ARGV...
  local svc=$1
  shift
  local envs=()
  while [ "$1" != "--" ]; do
    envs+=("$1")
    shift
  done
  shift
  # `setsid -f` would fork: the PID we record must be the group leader's.
  env "${envs[@]}" setsid "$@" </dev/null >>"$D/log/$svc.log" 2>&1 &
  echo $! >"$D/run/$svc.pid"
}

pid_of() { cat "$D/run/$1.pid" 2>/dev/null || true; }

group_alive() { [ -n "$1" ] && kill -0 -- "-$1" 2>/dev/null; }

stop_procs() { # SVC... : TERM to every group at once, KILL what is left after 10 s
  local svc pid pids=() i alive
  for svc in "$@"; do
    pid=$(pid_of "$svc")
    [ -n "$pid" ] || continue
    pids+=("$pid")
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for i in $(seq 1 100); do
    alive=""
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    alive=""
    for pid in "${pids[@]}"; do group_alive "$pid" && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.1
  done
  for svc in "$@"; do
    pid=$(pid_of "$svc")
    if [ -n "$pid" ] && group_alive "$pid"; then echo "$svc"; else rm -f "$D/run/$svc.pid"; fi
  done
}

wait_for() { # SECONDS WHAT COMMAND...
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what: not ready within $secs s (logs in $D/log/)"
}

port_open() { (: </dev/tcp/$HOST/"$1") 2>/dev/null; }
http_up() { curl -sf -o /dev/null --max-time 5 "$1"; }

# ---------------------------------------------------------------------------------------------
# Configuration

write_wrappers() {
  mkdir -p "$D/bin"
  local name mod
  for pair in nova-manage:nova.cmd.manage nova-conductor:nova.cmd.conductor \
    nova-scheduler:nova.cmd.scheduler nova-compute:nova.cmd.compute glance-manage:glance.cmd.manage \
    glance-api:glance.cmd.api neutron-db-manage:neutron.db.migration.cli \
    neutron-server:neutron.cmd.eventlet.server; do
    name=${pair%%:*}
    mod=${pair#*:}
    printf '#!%s\nimport sys\nfrom %s import main\nsys.exit(main())\n' "$PY" "$mod" >"$D/bin/$name"
    chmod 755 "$D/bin/$name"
  done
  printf 'from nova.api.openstack.compute.wsgi import init_application\napplication = init_application()\n' \
    >"$D/bin/nova-api.wsgi"
  # Neutron's shipped mechanism drivers bind a port only for a live OVS/linuxbridge agent; this
  # one binds every port (no dataplane: the fake driver boots nothing).
  mkdir -p "$D/py/osk_noop_mech-1.0.dist-info"
  cat >"$D/py/osk_noop_mech.py" <<'EOF'
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class NoopMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        seg = context.segments_to_bind[0]
        context.set_binding(seg[api.ID], portbindings.VIF_TYPE_OTHER, {}, status='ACTIVE')
EOF
  printf 'Metadata-Version: 2.1\nName: osk_noop_mech\nVersion: 1.0\n' >"$D/py/osk_noop_mech-1.0.dist-info/METADATA"
  printf '[neutron.ml2.mechanism_drivers]\nosk_noop = osk_noop_mech:NoopMechanismDriver\n' \
    >"$D/py/osk_noop_mech-1.0.dist-info/entry_points.txt"
}

authtoken() { # the [keystone_authtoken]-style block every service uses to check tokens
  cat <<EOF
www_authenticate_uri = http://$HOST:5000
auth_url = http://$HOST:5000
auth_type = password
username = admin
password = $ADMIN_PW
project_name = admin
user_domain_name = Default
project_domain_name = Default
region_name = $REGION
EOF
}

db() { echo "mysql+pymysql://os:$DB_PW@$HOST:3306/$1"; }

uwsgi_ini() { # NAME PORT WSGI_FILE PROCESSES THREADS ENV
  cat >"$D/etc/$1-uwsgi.ini" <<EOF
[uwsgi]
plugins = python3
http-socket = $HOST:$2
wsgi-file = $3
processes = $4
threads = $5
master = true
lazy-apps = true
need-app = true
die-on-term = true
buffer-size = 65535
; uwsgi's http-socket closes after each answer without saying so: clients reusing the socket got
; resets. Saying it makes them open a new one.
add-header = Connection: close
env = $6
logto = $D/log/$1.log
EOF
}

write_configs() {
  local e=$D/etc
  mkdir -p "$e/keystone" "$e/nova" "$e/placement" "$e/glance" "$e/neutron" "$D/keystone/fernet" \
    "$D/keystone/credential" "$D/glance/images" "$D/glance/staging" "$D/glance/tasks" "$D/nova/state" \
    "$D/neutron/state" "$D/lock"

  cat >"$e/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $D/log/keystone-app.log
[database]
connection = $(db keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $D/keystone/fernet
[fernet_receipts]
key_repository = $D/keystone/fernet
[credential]
key_repository = $D/keystone/credential
[identity]
# bcrypt's default 12 rounds: ~290 ms per password or application-credential login; 4: ~80 ms.
password_hash_rounds = 4
EOF

  cat >"$e/placement/placement.conf" <<EOF
[DEFAULT]
log_file = $D/log/placement-app.log
[api]
auth_strategy = keystone
[placement_database]
connection = $(db placement)
[keystone_authtoken]
$(authtoken)
EOF

  cat >"$e/glance/glance-api.conf" <<EOF
[DEFAULT]
bind_host = $HOST
bind_port = 9292
workers = 0
log_file = $D/log/glance-app.log
enabled_backends = fs:file
[database]
connection = $(db glance)
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $D/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $D/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $D/glance/tasks
[paste_deploy]
flavor = keystone
config_file = $e/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $D/lock
[keystone_authtoken]
$(authtoken)
EOF
  cat >"$e/glance/glance-api-paste.ini" <<'EOF'
[pipeline:glance-api-keystone]
pipeline = versionnegotiation authtoken context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
EOF

  cat >"$e/neutron/neutron.conf" <<EOF
[DEFAULT]
bind_host = $HOST
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
api_paste_config = $e/neutron/api-paste.ini
api_workers = 0
rpc_workers = 1
rpc_state_report_workers = 0
dhcp_agent_notification = false
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
transport_url = rabbit://guest:guest@$HOST:5672/
state_path = $D/neutron/state
log_file = $D/log/neutron-app.log
[database]
connection = $(db neutron)
[oslo_concurrency]
lock_path = $D/lock
[keystone_authtoken]
$(authtoken)
EOF
  cat >"$e/neutron/ml2_conf.ini" <<'EOF'
[ml2]
type_drivers = local,flat
tenant_network_types = local
extension_drivers = port_security
mechanism_drivers = osk_noop
[ml2_type_flat]
flat_networks = *
EOF
  cp /usr/lib/python3/dist-packages/neutron/tests/etc/api-paste.ini "$e/neutron/api-paste.ini"

  cat >"$e/nova/nova.conf" <<EOF
[DEFAULT]
compute_driver = fake.FakeDriver
host = hatchery-fake-compute
transport_url = rabbit://guest:guest@$HOST:5672/
state_path = $D/nova/state
log_file = $D/log/nova-app.log
my_ip = $HOST
[api]
auth_strategy = keystone
[api_database]
connection = $(db nova_api)
[database]
connection = $(db nova)
[conductor]
workers = 1
[scheduler]
workers = 1
[quota]
# Nova's defaults (10 instances, 20 cores, 50 GiB) would cap the tests; the quota tests set
# a project's own limits.
instances = -1
cores = -1
ram = -1
[vnc]
enabled = false
[oslo_concurrency]
lock_path = $D/lock
[keystone_authtoken]
$(authtoken)
[placement]
$(authtoken)
[neutron]
$(authtoken)
[glance]
region_name = $REGION
EOF
  # nova-api under uwsgi takes the *first* file of OS_NOVA_CONFIG_DIR as its paste config.
  cat >"$e/nova/api-paste.ini" <<'EOF'
[composite:osapi_compute]
use = call:nova.api.openstack.urlmap:urlmap_factory
/: oscomputeversions
/v2.1: openstack_compute_api_v21

[composite:openstack_compute_api_v21]
use = call:nova.api.auth:pipeline_factory_v21
keystone = compute_req_id faultwrap request_log sizelimit authtoken keystonecontext osapi_compute_app_v21

[filter:request_log]
paste.filter_factory = nova.api.openstack.requestlog:RequestLog.factory

[filter:compute_req_id]
paste.filter_factory = nova.api.compute_req_id:ComputeReqIdMiddleware.factory

[filter:faultwrap]
paste.filter_factory = nova.api.openstack:FaultWrapper.factory

[filter:sizelimit]
paste.filter_factory = oslo_middleware:RequestBodySizeLimiter.factory

[filter:keystonecontext]
paste.filter_factory = nova.api.auth:NovaKeystoneContext.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[app:osapi_compute_app_v21]
paste.app_factory = nova.api.openstack.compute:APIRouterV21.factory

[pipeline:oscomputeversions]
pipeline = faultwrap request_log oscomputeversionapp

[app:oscomputeversionapp]
paste.app_factory = nova.api.openstack.compute.versions:Versions.factory
EOF

  uwsgi_ini keystone 5000 /usr/bin/keystone-wsgi-public 1 4 "OS_KEYSTONE_CONFIG_DIR=$e/keystone"
  uwsgi_ini placement 8778 /usr/bin/placement-api 1 2 "OS_PLACEMENT_CONFIG_DIR=$e/placement"
  uwsgi_ini nova-api 8774 "$D/bin/nova-api.wsgi" 2 1 "OS_NOVA_CONFIG_DIR=$e/nova"
}

# ---------------------------------------------------------------------------------------------
# Services

start_svc() {
  local e=$D/etc
  case $1 in
    mariadb)
      start_proc mariadb -- mariadbd --no-defaults --user=root --datadir="$D/mysql" --socket="$D/run/mysql.sock" \
        --pid-file="$D/run/mysqld.pid" --bind-address=$HOST --port=3306 --skip-name-resolve --skip-log-bin \
        --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --max-connections=1000
      ;;
    epmd) start_proc epmd -- epmd -address $HOST ;;
    rabbitmq)
      # The /usr/sbin wrapper switches to the rabbitmq user: run the server script itself.
      start_proc rabbitmq HOME="$D/rabbit" RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=$HOST \
        RABBITMQ_MNESIA_BASE="$D/rabbit/mnesia" RABBITMQ_LOG_BASE="$D/log/rabbit" \
        RABBITMQ_CONF_ENV_FILE="$D/rabbit/env.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$D/rabbit/plugins" \
        RABBITMQ_CONFIG_FILE="$D/rabbit/rabbitmq" ERL_EPMD_ADDRESS=$HOST \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        -- /usr/lib/rabbitmq/bin/rabbitmq-server
      ;;
    keystone) start_proc keystone -- uwsgi --ini "$e/keystone-uwsgi.ini" ;;
    placement) start_proc placement -- uwsgi --ini "$e/placement-uwsgi.ini" ;;
    glance) start_proc glance -- "$D/bin/glance-api" --config-file "$e/glance/glance-api.conf" ;;
    neutron)
      start_proc neutron PYTHONPATH="$D/py" -- "$D/bin/neutron-server" --config-file "$e/neutron/neutron.conf" \
        --config-file "$e/neutron/ml2_conf.ini"
      ;;
    nova-api) start_proc nova-api -- uwsgi --ini "$e/nova-api-uwsgi.ini" ;;
    nova-conductor | nova-scheduler | nova-compute)
      start_proc "$1" -- "$D/bin/$1" --config-file "$e/nova/nova.conf"
      ;;
    *) die "unknown service $1 (one of: $SERVICES)" ;;
  esac
}

wait_svc() {
  case $1 in
    mariadb) wait_for 60 MariaDB mariadb --no-defaults -S "$D/run/mysql.sock" -uroot -e 'select 1' ;;
    epmd) wait_for 10 epmd port_open 4369 ;;
    rabbitmq) wait_for 60 RabbitMQ port_open 5672 ;;
    keystone) wait_for 60 Keystone http_up "http://$HOST:5000/v3" ;;
    placement) wait_for 60 Placement http_up "http://$HOST:8778/" ;;
    glance) wait_for 60 Glance http_up "http://$HOST:9292/versions" ;;
    neutron) wait_for 90 Neutron http_up "http://$HOST:9696/" ;;
    nova-api) wait_for 90 nova-api http_up "http://$HOST:8774/" ;;
    *) sleep 0 ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# Keystone API (curl + jq)

token_for() { # USER PASSWORD PROJECT → a scoped token
  curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "http://$HOST:5000/v3/auth/tokens" -d "$(jq -n \
    --arg u "$1" --arg p "$2" --arg pr "$3" '{auth: {identity: {methods: ["password"], password: {user:
    {name: $u, domain: {id: "default"}, password: $p}}}, scope: {project: {name: $pr, domain: {id: "default"}}}}}')" |
    tr -d '\r' | awk 'tolower($1) == "x-subject-token:" {print $2}'
}

api() { # METHOD URL [JSON] → body (fails on an HTTP error, with the answer on stderr)
  local out status data=()
  [ -z "${3:-}" ] || data=(-d "$3")
  out=$(curl -s -w '\n%{http_code}' -X "$1" -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' \
    -H 'OpenStack-API-Version: compute 2.52' "${data[@]}" "$2")
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  case $status in 2??) printf '%s' "$out" ;; *) die "$1 $2: $status $out" ;; esac
}

endpoint() { # TYPE NAME URL
  local id
  id=$(api POST "http://$HOST:5000/v3/services" "$(jq -n --arg t "$1" --arg n "$2" '{service: {type: $t, name: $n}}')" |
    jq -r .service.id)
  for iface in public internal; do
    api POST "http://$HOST:5000/v3/endpoints" "$(jq -n --arg s "$id" --arg u "$3" --arg i $iface --arg r $REGION \
      '{endpoint: {service_id: $s, interface: $i, url: $u, region_id: $r}}')" >/dev/null
  done
}

# ---------------------------------------------------------------------------------------------

cmd_up() {
  [ ! -e "$D/run" ] || [ -z "$(ls "$D/run"/*.pid 2>/dev/null)" ] || die "$D is in use (scripts/openstack.sh down $D first)"
  for port in 3306 4369 5000 5672 8774 8778 9292 9696 25672; do
    ! port_open $port || die "port $port on $HOST is taken"
  done
  local t0=$SECONDS
  mkdir -p "$D" && chmod 700 "$D"
  mkdir -p "$D/run" "$D/log" "$D/rabbit" "$D/etc"
  ADMIN_PW=$(openssl rand -hex 16)
  DB_PW=$(openssl rand -hex 16)
  local member_pw
  member_pw=$(openssl rand -hex 16)
  write_wrappers
  write_configs
  : >"$D/rabbit/env.conf"
  echo '[].' >"$D/rabbit/plugins"
  printf 'loopback_users = none\nlisteners.tcp.default = %s:5672\n' $HOST >"$D/rabbit/rabbitmq.conf"

  log "MariaDB, RabbitMQ"
  mariadb-install-db --no-defaults --user=root --datadir="$D/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$D/log/mariadb-install.log" 2>&1
  start_svc mariadb
  start_svc epmd
  wait_svc epmd
  start_svc rabbitmq
  wait_svc mariadb
  {
    for db in keystone glance placement neutron nova_api nova nova_cell0; do echo "CREATE DATABASE $db;"; done
    echo "CREATE USER 'os'@'$HOST' IDENTIFIED BY '$DB_PW'; GRANT ALL ON *.* TO 'os'@'$HOST';"
  } | mariadb --no-defaults -S "$D/run/mysql.sock" -uroot

  log "database schemas"
  local e=$D/etc pids=()
  (
    keystone-manage --config-dir "$e/keystone" db_sync
    keystone-manage --config-dir "$e/keystone" fernet_setup --keystone-user root --keystone-group root
    keystone-manage --config-dir "$e/keystone" credential_setup --keystone-user root --keystone-group root
    keystone-manage --config-dir "$e/keystone" bootstrap --bootstrap-password "$ADMIN_PW" \
      --bootstrap-region-id $REGION --bootstrap-admin-url "http://$HOST:5000/v3" \
      --bootstrap-public-url "http://$HOST:5000/v3" --bootstrap-internal-url "http://$HOST:5000/v3"
  ) >"$D/log/keystone-manage.log" 2>&1 &
  pids+=($!)
  placement-manage --config-dir "$e/placement" db sync >"$D/log/placement-manage.log" 2>&1 &
  pids+=($!)
  "$D/bin/glance-manage" --config-file "$e/glance/glance-api.conf" db_sync >"$D/log/glance-manage.log" 2>&1 &
  pids+=($!)
  "$D/bin/neutron-db-manage" --config-file "$e/neutron/neutron.conf" --config-file "$e/neutron/ml2_conf.ini" \
    upgrade heads >"$D/log/neutron-manage.log" 2>&1 &
  pids+=($!)
  (
    nm() { "$D/bin/nova-manage" --config-file "$e/nova/nova.conf" "$@"; }
    nm api_db sync
    nm cell_v2 map_cell0
    nm cell_v2 create_cell --name cell1
    nm db sync
  ) >"$D/log/nova-manage.log" 2>&1 &
  pids+=($!)
  for p in "${pids[@]}"; do wait "$p" || die "a schema step failed (logs in $D/log/*-manage.log)"; done

  log "Keystone, Placement, Glance, Neutron"
  start_svc keystone
  wait_svc keystone
  TOKEN=$(token_for admin "$ADMIN_PW" admin)
  [ -n "$TOKEN" ] || die "no admin token from Keystone"
  # Nova's scheduler exits without a placement endpoint: the catalog comes first.
  endpoint placement placement "http://$HOST:8778"
  endpoint image glance "http://$HOST:9292"
  endpoint network neutron "http://$HOST:9696"
  endpoint compute nova "http://$HOST:8774/v2.1"
  start_svc placement
  start_svc glance
  start_svc neutron
  wait_svc placement
  wait_svc rabbitmq

  log "Nova"
  for s in nova-api nova-conductor nova-scheduler nova-compute; do start_svc $s; done
  wait_svc glance
  wait_svc neutron
  wait_svc nova-api
  # The compute node registers itself; the cell learns of its host only through discover_hosts.
  local i
  for i in $(seq 1 120); do
    "$D/bin/nova-manage" --config-file "$e/nova/nova.conf" cell_v2 discover_hosts >>"$D/log/nova-manage.log" 2>&1 || true
    [ "$(mariadb --no-defaults -S "$D/run/mysql.sock" -uroot -N -e 'select count(*) from nova_api.host_mappings')" != 0 ] && break
    sleep 0.5
  done
  [ "$i" -lt 120 ] || die "nova-compute never registered (logs in $D/log/nova-compute.log)"
  wait_for 60 "a placement provider with inventory" sh -c "curl -sf -H 'X-Auth-Token: $TOKEN' \
    -H 'OpenStack-API-Version: placement 1.4' \
    'http://$HOST:8778/resource_providers?resources=VCPU:1,MEMORY_MB:64,DISK_GB:1' | jq -e '.resource_providers | length > 0'"

  log "project, user, flavor, image, network"
  local project user role
  project=$(api POST "http://$HOST:5000/v3/projects" '{"project": {"name": "hatchery", "domain_id": "default"}}' | jq -r .project.id)
  user=$(api POST "http://$HOST:5000/v3/users" "$(jq -n --arg p "$member_pw" --arg pr "$project" \
    '{user: {name: "hatchery", domain_id: "default", password: $p, default_project_id: $pr}}')" | jq -r .user.id)
  role=$(api GET "http://$HOST:5000/v3/roles?name=member" | jq -r '.roles[0].id')
  api PUT "http://$HOST:5000/v3/projects/$project/users/$user/roles/$role" >/dev/null
  # Disk 1: Nova refuses image-backed boots of a zero-disk flavor to non-admins.
  local flavor
  flavor=$(api POST "http://$HOST:8774/v2.1/flavors" '{"flavor": {"name": "hatchery.small", "ram": 512, "vcpus": 1,
    "disk": 1}}' | jq -r .flavor.id)
  local image
  image=$(api POST "http://$HOST:9292/v2/images" '{"name": "hatchery-test", "disk_format": "raw",
    "container_format": "bare", "visibility": "public"}' | jq -r .id)
  head -c 1024 /dev/zero | curl -sf -X PUT -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/octet-stream' \
    --data-binary @- "http://$HOST:9292/v2/images/$image/file" || die "image upload failed"
  local net
  net=$(api POST "http://$HOST:9696/v2.0/networks" '{"network": {"name": "hatchery-net", "shared": true}}' | jq -r .network.id)
  api POST "http://$HOST:9696/v2.0/subnets" "$(jq -n --arg n "$net" '{subnet: {network_id: $n, ip_version: 4,
    cidr: "10.99.0.0/24", enable_dhcp: false, name: "hatchery-subnet"}}')" >/dev/null

  log "a first server (the slowest), ACTIVE then gone"
  local server status
  server=$(api POST "http://$HOST:8774/v2.1/servers" "$(jq -n --arg i "$image" --arg n "$net" --arg f "$flavor" \
    '{server: {name: "warm-up", imageRef: $i, flavorRef: $f, networks: [{uuid: $n}]}}')" | jq -r .server.id)
  for i in $(seq 1 300); do
    status=$(api GET "http://$HOST:8774/v2.1/servers/$server" | jq -r .server.status)
    [ "$status" = BUILD ] || break
    sleep 0.2
  done
  [ "$status" = ACTIVE ] || die "the first server is $status: $(api GET "http://$HOST:8774/v2.1/servers/$server" | jq -c .server.fault)"
  api DELETE "http://$HOST:8774/v2.1/servers/$server" >/dev/null
  for i in $(seq 1 100); do
    curl -sf -o /dev/null -H "X-Auth-Token: $TOKEN" "http://$HOST:8774/v2.1/servers/$server" || break
    sleep 0.2
  done

  jq -n --arg auth "http://$HOST:5000/v3" --arg region $REGION --arg apw "$ADMIN_PW" --arg mpw "$member_pw" \
    --arg project "$project" --arg user "$user" --arg image "$image" --arg net "$net" '{auth_url: $auth,
    region: $region, admin: {user: "admin", password: $apw, project: "admin"}, member: {user: "hatchery",
    user_id: $user, password: $mpw, project: "hatchery", project_id: $project}, flavor: "hatchery.small",
    image: "hatchery-test", image_id: $image, network: "hatchery-net", network_id: $net}' >"$D/cloud.json"
  chmod 600 "$D/cloud.json"
  log "up in $((SECONDS - t0)) s"
  echo "$D/cloud.json"
}

cmd_down() {
  local left
  # The OpenStack services together, then what they use (RabbitMQ, MariaDB).
  left=$(stop_procs nova-compute nova-scheduler nova-conductor nova-api neutron glance placement keystone)
  left="$left $(stop_procs rabbitmq epmd mariadb)"
  [ -z "${left// /}" ] || die "still running: $left"
}

cmd_status() {
  local svc pid missing=0
  for svc in $SERVICES; do
    pid=$(pid_of "$svc")
    if group_alive "$pid"; then echo "$svc running (pgid $pid)"; else
      echo "$svc stopped"
      missing=1
    fi
  done
  return $missing
}

case ${1:-} in
  install) install_packages ;;
  up | down | status | start | stop)
    [ -n "${2:-}" ] || die "usage: $0 $1 DIR"
    mkdir -p "$2"
    D=$(cd "$2" && pwd)
    case $1 in
      up) cmd_up ;;
      down) cmd_down ;;
      status) cmd_status ;;
      stop)
        [ -z "$(stop_procs "${3:?service}")" ] || die "$3 still runs"
        ;;
      start)
        start_svc "${3:?service}"
        wait_svc "$3"
        ;;
    esac
    ;;
  *) die "usage: $0 install | up DIR | status DIR | down DIR | stop DIR SERVICE | start DIR SERVICE" ;;
esac
