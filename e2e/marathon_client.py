#!/usr/bin/python3
"""Drive Berth's Marathon /v2 REST API with python-marathon, a Marathon client
library someone else wrote (Debian package python3-marathon).

Usage: marathon_client.py URL APP_ID

Creates a resident app, lists it (label selector), reads its tasks, scales it
to 0 and back (the instance comes back on the same berth: same agent, same
persistence id), restarts it, kills its task, follows the event stream
(Server-Sent Events), checks the 422, 404 and 409 errors, and deletes it.
Prints one line per step; exits non-zero on the first failure.
"""
import queue
import sys
import threading
import time

from marathon import MarathonClient
from marathon.exceptions import ConflictError, MarathonHttpError, NotFoundError
from marathon.models import MarathonApp

URL, APP = sys.argv[1], sys.argv[2]
BLOCKED = APP + "-blocked"
c = MarathonClient([URL], timeout=60)


def step(msg):
    print("STEP", msg, flush=True)


def check(cond, msg):
    if not cond:
        raise SystemExit("FAILED: " + msg)


def wait(what, cond, timeout=180):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = cond()
            if v:
                return v
        except NotFoundError as e:
            last = e
        time.sleep(0.5)
    raise SystemExit("FAILED: timed out waiting for %s (%s)" % (what, last))


def settled(app_id, running):
    """The app has no deployment and `running` running tasks."""
    def cond():
        a = c.get_app(app_id)
        return not a.deployments and a.tasks_running == running
    return cond


def tasks_of(app_id):
    return c.list_tasks(app_id=app_id)


def running_task(app_id):
    ts = [t for t in tasks_of(app_id) if t.state == "TASK_RUNNING"]
    return ts[0] if len(ts) == 1 else None


def new_running_task(app_id, old_id):
    """The one running task of the app if it is not old_id (one read: the
    task may change between two)."""
    t = running_task(app_id)
    return t if t and t.id != old_id else None


events = queue.Queue()


def listen():
    # A stream ends when the leader changes (as Marathon's does): a client
    # reconnects.
    failures = 0
    while True:
        try:
            for ev in c.event_stream(event_types=[
                    "event_stream_attached", "api_post_event", "status_update_event", "deployment_success"]):
                failures = 0
                events.put(ev)
        except Exception as e:  # reported by wait_event if it persists
            failures += 1
            if failures >= 20:
                events.put(e)
                return
        time.sleep(0.5)


def wait_event(what, match, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ev = events.get(timeout=1)
        except queue.Empty:
            continue
        if isinstance(ev, Exception):
            raise SystemExit("FAILED: event stream: %r" % ev)
        if match(ev):
            return ev
    raise SystemExit("FAILED: no event " + what)


step("ping and info")
check(c.ping().strip() in (b"pong", "pong", b'"pong"'), "ping")
info = wait("a leader in /v2/info", lambda: (lambda i: i if i.leader else None)(c.get_info()))
check(info.name == "berth", "info %r" % info.__dict__)

step("event stream")
threading.Thread(target=listen, daemon=True).start()
wait_event("event_stream_attached", lambda e: e.event_type == "event_stream_attached")

step("create")
app = MarathonApp.from_json({
    "cmd": "echo $$ > data/pid && exec sleep 100000",
    "instances": 1, "cpus": 0.1, "mem": 32,
    "labels": {"tier": "db"},
    "container": {"type": "MESOS", "volumes": [
        {"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]},
    "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
})
created = c.create_app(APP, app)
check(created and created.id == APP, "created %r" % created)
wait_event("api_post_event", lambda e: e.event_type == "api_post_event" and e.app_definition["id"] == APP)
wait("the app to run", settled(APP, 1))
wait_event("status_update_event TASK_RUNNING", lambda e: e.event_type == "status_update_event"
           and e.app_id == APP and e.task_status == "TASK_RUNNING")
wait_event("deployment_success", lambda e: e.event_type == "deployment_success")

step("list and label selector")
check(APP in [a.id for a in c.list_apps()], "list")
check([a.id for a in c.list_apps(label="tier==db")] == [APP], "label tier==db")
check(c.list_apps(label="tier==web") == [], "label tier==web")
check([a.id for a in c.list_apps(app_id=APP.strip("/"))] == [APP], "id filter")
shown = c.get_app(APP)
check(shown.tasks_running == 1 and shown.instances == 1 and shown.labels == {"tier": "db"}, "get_app")

step("tasks")
first = running_task(APP)
check(first is not None and first.started_at is not None and first.host, "running task")
check(len(first.local_volumes) == 1, "local volume %r" % first.local_volumes)
berth = (first.slave_id, first.local_volumes[0]["persistenceId"])
check(any(t.id == first.id for t in c.list_tasks()), "/v2/tasks lists the task")

step("errors")
try:
    c.create_app(APP, MarathonApp(cmd="sleep 1"))
    raise SystemExit("FAILED: duplicate create succeeded")
except ConflictError as e:
    check("already exists" in str(e), "409 duplicate: %s" % e)
try:
    c.get_app(APP + "-nope")
    raise SystemExit("FAILED: missing app found")
except NotFoundError as e:
    check("does not exist" in str(e), "404: %s" % e)
try:
    c.create_app(APP + "-bad", MarathonApp(cmd="sleep 1", mem=-1))
    raise SystemExit("FAILED: invalid app accepted")
except MarathonHttpError as e:
    check(e.status_code == 422 and [d["path"] for d in e.error_details] == ["/mem"], "422: %s %r" % (e, e.error_details))
# An app that cannot be placed keeps its deployment running: it is locked.
c.create_app(BLOCKED, MarathonApp(cmd="sleep 100000", cpus=1000, mem=8, instances=1))
try:
    c.update_app(BLOCKED, MarathonApp(instances=2))
    raise SystemExit("FAILED: update of a locked app succeeded")
except ConflictError as e:
    check("locked" in str(e), "409 locked: %s" % e)
c.update_app(BLOCKED, MarathonApp(instances=0), force=True)
c.delete_app(BLOCKED, force=True)  # python-marathon sends force=false explicitly
wait("the blocked app to go", lambda: BLOCKED not in [a.id for a in c.list_apps()])

step("scale to 0: the instance stops, its berth stays")
c.scale_app(APP, instances=0)
wait("scale to 0", settled(APP, 0))
stopped = wait("the stopped task", lambda: [t for t in tasks_of(APP) if t.state != "TASK_RUNNING"])
check(len(stopped) == 1 and stopped[0].started_at is None, "stopped resident task %r" % stopped[0].__dict__)
check((stopped[0].slave_id, stopped[0].local_volumes[0]["persistenceId"]) == berth, "stopped task keeps its berth")

step("scale back to 1: same berth")
c.scale_app(APP, instances=1)
wait("scale to 1", settled(APP, 1))
again = wait("the running task", lambda: running_task(APP))
check((again.slave_id, again.local_volumes[0]["persistenceId"]) == berth, "same berth after scale-up: %r vs %r" % (
    (again.slave_id, again.local_volumes), berth))
check(again.id != first.id, "a new task id for the relaunch")

step("restart")
d = c.restart_app(APP)
check(d["deploymentId"] and d["version"], "restart result %r" % d)
restarted = wait("the restart", lambda: not c.get_app(APP).deployments and new_running_task(APP, again.id))
check((restarted.slave_id, restarted.local_volumes[0]["persistenceId"]) == berth, "same berth after restart")

step("kill the task: relaunched on the same berth")
killed = c.kill_task(APP, restarted.id)
check(killed.id == restarted.id, "killed %r" % killed)
relaunched = wait("the relaunch", lambda: new_running_task(APP, restarted.id))
check((relaunched.slave_id, relaunched.local_volumes[0]["persistenceId"]) == berth, "same berth after kill")

step("versions and deployments")
check(len(c.list_versions(APP)) >= 3, "versions")
check(c.list_deployments() == [], "no deployments left")

step("delete")
c.delete_app(APP)
wait("the app to go", lambda: APP not in [a.id for a in c.list_apps()])
print("OK", flush=True)
