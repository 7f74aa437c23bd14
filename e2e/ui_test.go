package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// The web UI's tests drive headless Chromium against `berth dev`: every step
// is done in the browser, through the pages an operator uses. The API (CLI)
// is used only to check what the UI did and to set up ACL tokens.

// uiTimeout bounds one browser step (a click, a page load); waits for the
// cluster to do something have their own, longer deadlines.
const uiTimeout = time.Minute

// chromiumPath finds the browser: $BERTH_CHROMIUM, else chromium on PATH.
// Without one the test is skipped, except in CI (which installs it).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BERTH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "needs Chromium (apt-get install chromium, or BERTH_CHROMIUM=/path/to/chrome) to test the web UI"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium tab on a berth server's UI.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string // http://host:port/ui/
}

// newBrowser starts Chromium with a fresh profile. It is stopped at the end
// of the test; if the test failed, a screenshot of each page of the UI is
// written first (to $BERTH_UI_SCREENSHOTS or a new temp dir, logged).
func newBrowser(t *testing.T, api string, appIDs ...string) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // Chromium refuses to sandbox as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		// chromedp gives Chromium 20 s to print its DevTools address,
		// which a loaded CI machine can exceed.
		chromedp.WSURLReadTimeout(uiTimeout),
	)
	// A chromedp context allocates its browser once: after a failed start
	// (Chromium slow to print its DevTools address on a loaded machine, or
	// dead at start) the same context must not be used again, since
	// chromedp then starts a second browser on it and panics when that one
	// exits (seen in CI). So each attempt gets its own allocator and
	// context, the start has a deadline, and nothing else touches the
	// context before it succeeded.
	var (
		ctx                    context.Context
		cancelTab, cancelAlloc context.CancelFunc
		startErr               error
	)
	for attempt := 1; attempt <= 3; attempt++ {
		allocCtx, cAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		tabCtx, cTab := chromedp.NewContext(allocCtx)
		// The browser process lives as long as the context that starts
		// it, so the start runs on tabCtx itself, and the deadline cancels
		// that context.
		started := make(chan error, 1)
		go func() { started <- chromedp.Do(tabCtx) }()
		select {
		case startErr = <-started:
		case <-time.After(uiTimeout):
			cTab()
			startErr = fmt.Errorf("no answer within %s (%v)", uiTimeout, <-started)
		}
		if startErr == nil {
			ctx, cancelTab, cancelAlloc = tabCtx, cTab, cAlloc
			break
		}
		cTab()
		cAlloc()
		t.Logf("start chromium %s (attempt %d of 3): %v", path, attempt, startErr)
	}
	if startErr != nil {
		t.Fatalf("start chromium %s: %v", path, startErr)
	}
	b := &browser{t: t, ctx: ctx, base: "http://" + api + "/ui/"}
	// What the page logs (uncaught exceptions above all) goes to the test
	// log when the test fails.
	var console syncBuffer
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			fmt.Fprintf(&console, "%s:%d %s\n", m.URL, m.Line+1, m)
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			b.screenshots(appIDs)
			t.Logf("---- browser console ----\n%s", tail(console.String(), 50))
		}
		cancelTab()
		cancelAlloc()
	})
	return b
}

// do runs browser actions within uiTimeout.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, b.pageText())
	}
}

// open loads a page of the UI ("#/apps", "#/new", ...) and waits until the
// app has rendered its main heading.
func (b *browser) open(route string) {
	b.t.Helper()
	b.do("open "+route, chromedp.Navigate(b.base+route), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

// click clicks the first element matching a CSS selector.
func (b *browser) click(what, sel string) {
	b.t.Helper()
	b.do("click "+what, chromedp.Click(chromedp.CSS(sel)))
}

// paste replaces the content of a text field as pasting does (the page sees
// input events, as from a user).
func (b *browser) paste(sel, text string) {
	b.t.Helper()
	b.do("focus "+sel, chromedp.Focus(chromedp.CSS(sel)))
	if _, err := eval[bool](b, fmt.Sprintf(`(() => { document.querySelector(%s).select(); return true })()`, jsString(sel))); err != nil {
		b.t.Fatalf("select the text of %s: %v", sel, err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		b.t.Fatalf("paste into %s: %v", sel, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// waitFor polls a JavaScript condition in the page until it is true.
func (b *browser) waitFor(timeout time.Duration, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := eval[bool](b, expr)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %s waiting for %s (last error %v)\npage text:\n%s", timeout, what, err, b.pageText())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// text returns the text of the first element matching a selector ("" if
// there is none).
func (b *browser) text(sel string) string {
	s, _ := eval[string](b, fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ""`, sel))
	return s
}

// pageText is the visible text of the page, for failure messages.
func (b *browser) pageText() string {
	s, err := eval[string](b, `document.body ? document.body.innerText : ""`)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return tail(s, 60)
}

// screenshot writes a PNG of the whole page.
func (b *browser) screenshot(path string) error {
	ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(path, png, 0o644)
}

// screenshots writes the current page and every page of the UI.
func (b *browser) screenshots(appIDs []string) {
	dir := os.Getenv("BERTH_UI_SCREENSHOTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "berth-ui-screenshots-"); err != nil {
			b.t.Logf("screenshots: %v", err)
			return
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Logf("screenshots: %v", err)
		return
	}
	prefix := strings.NewReplacer("/", "_").Replace(b.t.Name())
	shoot := func(name string) {
		p := filepath.Join(dir, prefix+"-"+name+".png")
		if err := b.screenshot(p); err != nil {
			b.t.Logf("screenshot %s: %v", name, err)
			return
		}
		b.t.Logf("screenshot: %s", p)
	}
	shoot("0-at-failure")
	routes := []string{"apps", "deployments", "cluster", "events"}
	for _, id := range appIDs {
		routes = append(routes, "app/"+strings.ReplaceAll(id, "/", "%2F"))
	}
	for i, r := range routes {
		ctx, cancel := context.WithTimeout(b.ctx, uiTimeout)
		err := chromedp.Do(ctx, chromedp.Navigate(b.base+"#/"+r), chromedp.WaitVisible(chromedp.CSS("main h1")))
		cancel()
		if err != nil {
			b.t.Logf("screenshot of %s: %v", r, err)
			continue
		}
		time.Sleep(time.Second) // let the page's first loads land
		shoot(fmt.Sprintf("%d-%s", i+1, strings.NewReplacer("/", "-", "%2F", "_").Replace(r)))
	}
}

// appRoute is the UI's route of an app's page.
func appRoute(id string) string { return "#/app/" + strings.ReplaceAll(id, "/", "%2F") }

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// healthyInstanceJS is true when the app page shows an instance with a
// running, healthy task (other than the instance `except`, if given).
func healthyInstanceJS(except string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("article.instance")].some(a =>
		a.dataset.instance !== %s && a.dataset.state === "TASK_RUNNING" &&
		a.querySelector("[data-testid=task-health]")?.innerText === "healthy")`, jsString(except))
}

// instanceIDJS is the id of the first instance shown on an app page.
const instanceIDJS = `document.querySelector("article.instance")?.dataset.instance ?? ""`

// TestUIPostgresWalkthrough is the README's PostgreSQL walkthrough done
// entirely in the browser: create the app from deploy/examples/postgres.json
// pasted as JSON, wait until it is healthy, read its log, stop and start it
// (the data stays), kill and wipe its instance after a confirmation that
// says the data will be destroyed (a fresh, empty volume replaces it), and
// remove it.
func TestUIPostgresWalkthrough(t *testing.T) {
	requirePostgres(t)
	chromiumPath(t)
	dataDir := filepath.Join(traversableTempDir(t), "data")
	api, mesosAddr := freePort(t), freePort(t)
	dev := startProc(t, "dev", "dev", "--data-dir", dataDir, "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	if want := "web UI on http://" + api + "/ui/"; !strings.Contains(dev.out.String(), want) {
		t.Errorf("berth dev did not print %q:\n%s", want, tail(dev.out.String(), 20))
	}
	example, err := os.ReadFile("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, api, "/postgres")

	// Create from the pasted JSON.
	b.open("#/apps")
	b.click("Create app", "[data-testid=new-app]")
	b.waitFor(uiTimeout, "the app editor", `location.hash === "#/new" && !!document.querySelector("#app-json")`)
	b.paste("#app-json", string(example))
	b.click("Create and deploy", "[data-testid=save-app]")
	b.waitFor(uiTimeout, "the app page", `location.hash === "#/app/%2Fpostgres"`)
	b.waitFor(4*time.Minute, "a healthy PostgreSQL instance", healthyInstanceJS(""))
	if vol := b.text("[data-testid=volume]"); !strings.Contains(vol, "postgres#pgdata#") || !strings.Contains(vol, "100 MiB") {
		t.Errorf("the instance's volume shows %q; want its persistence id and size", vol)
	}
	if r := b.text("[data-testid=reservation]"); !strings.HasPrefix(r, "reserved") {
		t.Errorf("reservation shows %q, want reserved", r)
	}
	first, err := eval[string](b, instanceIDJS)
	if err != nil || first == "" {
		t.Fatalf("instance id on the page: %q, %v", first, err)
	}
	// The task's stderr, read through the task-logs RPC.
	b.click("stderr", "article.instance .logs button:nth-of-type(2)")
	b.waitFor(time.Minute, "PostgreSQL's log in the page", `(document.querySelector("[data-testid=log]")?.innerText ?? "").includes("ready to accept connections")`)
	if shot := os.Getenv("BERTH_UI_README_SCREENSHOT"); shot != "" {
		// The README's picture of the app page: deployed, counted, healthy.
		b.waitFor(2*time.Minute, "the deployment to end", `!document.querySelector("[data-testid=deployments-note]") &&
			document.querySelector("[data-testid=healthy]")?.innerText === "1"`)
		if err := b.screenshot(shot); err != nil {
			t.Errorf("README screenshot: %v", err)
		}
	}

	// The data written now must survive stop and start.
	tk := waitHealthy(t, api, "/postgres", nil)
	conn := pgConnect(t, tk.Ports[0])
	if _, err := conn.Exec(context.Background(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('berth')"); err != nil {
		t.Fatalf("write to PostgreSQL: %v", err)
	}
	conn.Close(context.Background())

	b.click("Stop", "[data-testid=stop]")
	b.waitFor(2*time.Minute, "the instance to stop", `document.querySelector("[data-testid=stopped]")?.innerText === "1" &&
		document.querySelector("[data-testid=goal]")?.innerText === "Stopped" &&
		!document.querySelector("[data-testid=deployments-note]") && !!document.querySelector("[data-testid=start]")`)
	b.click("Start", "[data-testid=start]")
	b.waitFor(4*time.Minute, "the instance to run healthy again", healthyInstanceJS("")+` && document.querySelector("[data-testid=stopped]")?.innerText === "0"`)
	if again, _ := eval[string](b, instanceIDJS); again != first {
		t.Errorf("after stop and start the instance is %s, want the same berth %s", again, first)
	}
	tk = waitHealthy(t, api, "/postgres", nil)
	conn = pgConnect(t, tk.Ports[0])
	var v string
	if err := conn.QueryRow(context.Background(), "SELECT v FROM kept").Scan(&v); err != nil || v != "berth" {
		t.Fatalf("data after stop and start: %q, %v; want the row written before", v, err)
	}
	conn.Close(context.Background())

	// Kill and wipe: the confirmation says the data will be destroyed.
	b.waitFor(2*time.Minute, "the start deployment to end", `!document.querySelector("[data-testid=deployments-note]")`)
	b.click("Kill and wipe", "[data-testid=wipe]")
	b.waitFor(uiTimeout, "the confirmation", `!!document.querySelector("dialog[open][data-testid=confirm]")`)
	if msg := b.text("dialog[open]"); !strings.Contains(msg, "will be destroyed") || !strings.Contains(msg, "postgres#pgdata#") {
		t.Errorf("the wipe confirmation says %q; want it to say the volume will be destroyed", msg)
	}
	b.click("confirm the wipe", "dialog[open] [data-testid=confirm-ok]")
	b.waitFor(4*time.Minute, "a fresh healthy instance", healthyInstanceJS(first)+` && document.querySelectorAll("article.instance").length === 1`)
	tk = waitHealthy(t, api, "/postgres", func(tk taskJSON) bool { return tk.InstanceID != first })
	conn = pgConnect(t, tk.Ports[0])
	if err := conn.QueryRow(context.Background(), "SELECT v FROM kept").Scan(&v); err == nil {
		t.Fatalf("the wiped instance's table is still there (row %q); want an empty volume", v)
	}
	conn.Close(context.Background())

	// Remove, after a confirmation.
	b.waitFor(2*time.Minute, "the wipe's deployment to end", `!document.querySelector("[data-testid=deployments-note]")`)
	b.click("Remove", "[data-testid=remove]")
	b.waitFor(uiTimeout, "the confirmation", `!!document.querySelector("dialog[open][data-testid=confirm]")`)
	if msg := b.text("dialog[open]"); !strings.Contains(msg, "destroyed") {
		t.Errorf("the remove confirmation says %q; want it to say the data is destroyed", msg)
	}
	b.click("confirm the removal", "dialog[open] [data-testid=confirm-ok]")
	b.waitFor(2*time.Minute, "the app to be gone", `!!document.querySelector("[data-testid=app-gone]")`)
	b.open("#/apps")
	b.waitFor(uiTimeout, "the empty app list", `document.body.innerText.includes("No apps yet")`)
	eventually(t, 2*time.Minute, "the volumes to be destroyed", func() bool { return len(volumeDirs(t, dataDir)) == 0 })
}

// TestUIValidationErrorAtField: a definition the server refuses shows each
// violation with the field it names and the line of that field in the
// pasted JSON, for a schema problem (ParseApp) and for a rule of the app
// model (CreateApp); nothing is created.
func TestUIValidationErrorAtField(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	b := newBrowser(t, api)

	violation := func(field string) string {
		return "document.querySelector(" + jsString(`li.violation[data-field="`+field+`"]`) + ")"
	}
	b.open("#/new")
	b.paste("#app-json", "{\n  \"id\": \"/typo\",\n  \"cmd\": \"sleep 1000\",\n  \"instaces\": 1\n}")
	b.click("Create and deploy", "[data-testid=save-app]")
	b.waitFor(uiTimeout, "the unknown field's violation", "!!"+violation("instaces"))
	if got := b.text("li.violation"); !strings.Contains(got, "line 4") || !strings.Contains(got, `did you mean "instances"`) {
		t.Errorf("violation shown as %q; want it at line 4, suggesting instances", got)
	}

	app := `{
  "id": "/badvolume",
  "cmd": "sleep 1000",
  "cpus": 0.1,
  "mem": 32,
  "container": {
    "type": "MESOS",
    "volumes": [
      {"containerPath": "data", "mode": "RW",
       "persistent": {
         "size": 0
       }}
    ]
  }
}`
	b.paste("#app-json", app)
	b.click("Create and deploy", "[data-testid=save-app]")
	field := "container.volumes[0].persistent.size"
	b.waitFor(uiTimeout, "the volume size's violation", "!!"+violation(field))
	got, err := eval[string](b, violation(field)+".innerText")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "line 11") || !strings.Contains(got, `"size": 0`) {
		t.Errorf("violation shown as %q; want it at line 11 with the field's text", got)
	}
	if marked, _ := eval[string](b, `[...document.querySelectorAll(".gutter .err")].map(e => e.innerText).join(",")`); marked != "11" {
		t.Errorf("the gutter marks lines %q, want 11", marked)
	}
	if invalid, _ := eval[string](b, `document.querySelector("#app-json").getAttribute("aria-invalid")`); invalid != "true" {
		t.Errorf("the editor's aria-invalid is %q, want true", invalid)
	}
	if out := mustCLI(t, api, "app", "list"); strings.Contains(out, "/badvolume") || strings.Contains(out, "/typo") {
		t.Errorf("a refused app was created:\n%s", out)
	}
}

// TestUIFailingAppReason: an app whose task exits with an error shows why,
// in the app list and on its page, and its stderr is readable there.
func TestUIFailingAppReason(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	b := newBrowser(t, api, "/crashy")

	b.open("#/new")
	b.paste("#app-json", `{"id": "/crashy", "cmd": "echo disk on fire >&2; exit 3", "cpus": 0.1, "mem": 16, "instances": 1}`)
	b.click("Create and deploy", "[data-testid=save-app]")
	b.waitFor(uiTimeout, "the app page", `location.hash === "#/app/%2Fcrashy"`)
	b.waitFor(2*time.Minute, "the failure on the app page", `(document.querySelector("[data-testid=app-last-failure]")?.innerText ?? "").includes("exited with status 3")`)
	b.waitFor(time.Minute, "the instance's failure", `(document.querySelector("[data-testid=instance-failure]")?.innerText ?? "").includes("TASK_FAILED")`)
	b.click("stderr", "article.instance .logs button:nth-of-type(2)")
	b.waitFor(time.Minute, "the task's stderr", `(document.querySelector("[data-testid=log]")?.innerText ?? "").includes("disk on fire")`)

	b.open("#/apps")
	b.waitFor(uiTimeout, "the failure in the app list", `(document.querySelector("tr[data-app='/crashy'] [data-testid=last-failure]")?.innerText ?? "").includes("exited with status 3")`)
}

// TestUIRequiresToken: with ACLs on, the UI's files load without a token
// but it shows nothing of the cluster and asks for one; with the token
// typed in, its calls carry it and the apps appear.
func TestUIRequiresToken(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--acl-enabled")
	waitAPI(t, api)
	var boot tokenJSON
	eventually(t, 2*time.Minute, "acl bootstrap", func() bool {
		r := cli(t, api, "-o", "json", "acl", "bootstrap")
		if r.err != nil {
			return false
		}
		boot = decodeToken(t, r.stdout)
		return true
	})
	mustCLI(t, api, "--token", boot.SecretID, "app", "add", writeFile(t, "secret.json", `{"id": "/team/secret-app", "cmd": "sleep 1000", "cpus": 0.1, "mem": 16, "instances": 0}`))
	read := decodeToken(t, mustCLI(t, api, "--token", boot.SecretID, "-o", "json", "acl", "token", "create", "--policy", "read", "--description", "ui reader"))

	b := newBrowser(t, api)
	b.open("#/apps")
	b.waitFor(uiTimeout, "the UI to ask for a token", `!!document.querySelector("[data-testid=need-token]")`)
	if strings.Contains(b.pageText(), "/team/secret-app") {
		t.Fatal("the UI shows an app without a token")
	}

	b.paste("#token", read.SecretID)
	b.click("Use token", "[data-testid=token-save]")
	b.waitFor(uiTimeout, "the token's owner", `(document.querySelector("[data-testid=token-who]")?.innerText ?? "").includes("ui reader (read)")`)
	b.waitFor(uiTimeout, "the app list", `!!document.querySelector("tr[data-app='/team/secret-app']")`)
	if stored, _ := eval[string](b, `sessionStorage.getItem("berth.token") ?? ""`); stored != read.SecretID {
		t.Errorf("session storage holds %q, want the token", stored)
	}

	// A read token may not write: the refusal is shown, nothing changes.
	b.open(appRoute("/team/secret-app"))
	b.waitFor(uiTimeout, "the app page", `!!document.querySelector("[data-testid=start]")`)
	b.click("Start", "[data-testid=start]")
	b.waitFor(uiTimeout, "the refusal", `document.body.innerText.includes("action failed") && document.body.innerText.toLowerCase().includes("permission")`)
	var show struct {
		Instances int `json:"instances"`
	}
	cliJSON(t, api, &show, "--token", boot.SecretID, "app", "show", "/team/secret-app")
	if show.Instances != 0 {
		t.Errorf("a read token started the app: %d instances", show.Instances)
	}
}

// TestUIClusterEventsDeployments: the cluster page shows the leader, the
// Raft peers, Berth's Mesos subscription and the agent with its
// resources; the events page streams what happens live; the deployments
// page shows a deployment's steps.
func TestUIClusterEventsDeployments(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr)
	waitAPI(t, api)
	b := newBrowser(t, api, "/ticker")

	b.open("#/cluster")
	b.waitFor(uiTimeout, "the leader", `(document.querySelector("[data-testid=leader]")?.innerText ?? "").startsWith("dev")`)
	b.waitFor(uiTimeout, "the Raft peer", `(document.querySelector("[data-testid=peers] tbody")?.innerText ?? "").includes("voter")`)
	b.waitFor(uiTimeout, "the Mesos subscription", `(document.querySelector("[data-testid=mesos-subscription]")?.innerText ?? "").includes("subscribed") &&
		!document.querySelector("[data-testid=mesos-subscription] .bad")`)
	b.waitFor(uiTimeout, "the agent", `document.querySelectorAll("[data-testid=agents] tbody tr").length === 1 &&
		document.querySelector("[data-testid=agents] tbody").innerText.includes("8 cpus")`)

	b.open("#/events")
	b.waitFor(uiTimeout, "the event stream", `document.body.innerText.includes("live")`)
	mustCLI(t, api, "app", "add", writeFile(t, "ticker.json", `{"id": "/ticker", "cmd": "sleep 100000", "cpus": 0.1, "mem": 16, "instances": 1}`))
	b.waitFor(2*time.Minute, "the task's status event", `[...document.querySelectorAll("[data-testid=events] tbody tr")].some(r =>
		r.innerText.includes("status_update_event") && r.innerText.includes("/ticker") && r.innerText.includes("TASK_RUNNING"))`)

	// An unknown event type is refused, naming the known ones.
	b.paste("main input[placeholder^='all (or']", "no_such_event")
	if _, err := eval[bool](b, `(() => { document.activeElement.blur(); return true })()`); err != nil { // commit the field
		t.Fatal(err)
	}
	b.waitFor(uiTimeout, "the refusal of the filter", `document.querySelector("main [role=alert]")?.innerText.includes("status_update_event") &&
		document.body.innerText.includes("refused")`)

	b.open("#/deployments")
	b.click("Include finished deployments", "main input[type=checkbox]")
	b.waitFor(uiTimeout, "the deployment's step", `[...document.querySelectorAll("article.deployment")].some(d =>
		d.innerText.includes("succeeded") && d.innerText.includes("Step 1 of 1") && d.innerText.includes("StartApplication /ticker"))`)

	// Edit the definition as JSON, compare the two versions, roll back.
	b.open("#/edit/%2Fticker")
	b.waitFor(uiTimeout, "the app's JSON in the editor", `document.querySelector("#app-json").value.includes("sleep 100000")`)
	edited, err := eval[string](b, `document.querySelector("#app-json").value.replace("sleep 100000", "sleep 200000")`)
	if err != nil {
		t.Fatal(err)
	}
	b.paste("#app-json", edited)
	b.click("Save and deploy", "[data-testid=save-app]")
	b.waitFor(uiTimeout, "the app page", `location.hash === "#/app/%2Fticker"`)
	b.waitFor(2*time.Minute, "the new version deployed", `document.querySelectorAll("ol.versions li").length === 2 &&
		!document.querySelector("[data-testid=deployments-note]") && document.querySelector("[data-testid=running]")?.innerText === "1"`)
	b.click("Compare", "[data-testid=compare]")
	b.waitFor(uiTimeout, "the diff", `[...document.querySelectorAll("pre.diff .del")].some(l => l.innerText.includes("sleep 100000")) &&
		[...document.querySelectorAll("pre.diff .add")].some(l => l.innerText.includes("sleep 200000"))`)
	b.click("Roll back", "ol.versions li button")
	b.waitFor(uiTimeout, "the confirmation", `!!document.querySelector("dialog[open][data-testid=confirm]")`)
	b.click("confirm the rollback", "dialog[open] [data-testid=confirm-ok]")
	b.waitFor(2*time.Minute, "the rolled back version", `document.querySelectorAll("ol.versions li").length === 3 &&
		document.querySelector("[data-testid=definition]").textContent.includes("sleep 100000")`)
	var show struct {
		Cmd string `json:"cmd"`
	}
	cliJSON(t, api, &show, "app", "show", "/ticker")
	if show.Cmd != "sleep 100000" {
		t.Errorf("after the rollback the app's cmd is %q", show.Cmd)
	}
}

// TestUIWaitingInsufficientMemory: an app that fits no agent shows, on its
// page and on the deployments page, that its instance waits and that the
// offers were declined for InsufficientMemory (GetQueue).
func TestUIWaitingInsufficientMemory(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "2")
	waitAPI(t, api)
	b := newBrowser(t, api, "/huge")
	mustCLI(t, api, "app", "add", writeFile(t, "huge.json", `{"id": "/huge", "cmd": "sleep 1000", "cpus": 0.01, "mem": 1000000}`))

	declined := `(document.querySelector("[data-testid=declined] tr[data-reason=InsufficientMemory]")?.innerText ?? "").match(/InsufficientMemory\s+[1-9]/) !== null`
	b.open(appRoute("/huge"))
	b.waitFor(2*time.Minute, "InsufficientMemory on the app page", declined)
	if got := b.text("[data-testid=waiting-count]"); got != "1" {
		t.Errorf("waiting instances shown: %q, want 1", got)
	}
	b.open("#/deployments")
	b.waitFor(time.Minute, "InsufficientMemory on the deployments page", declined)
}

// TestUIBackupCreateVerify: an instance shows its health check results,
// one per check. On the page of an app with a backup policy (a file://
// target), a backup created in the UI shows in the list until it
// succeeds with its size and chunks; verifying it says every chunk was
// read; restoring asks for a confirmation that says the volume's data is
// replaced.
func TestUIBackupCreateVerify(t *testing.T) {
	chromiumPath(t)
	dataDir := traversableTempDir(t)
	target := filepath.Join(dataDir, "backups")
	if err := os.Mkdir(target, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(target, 0o777); err != nil { // the copy task runs as the task user
		t.Fatal(err)
	}
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", filepath.Join(dataDir, "dev"), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "1")
	waitAPI(t, api)
	b := newBrowser(t, api, "/vault")
	mustCLI(t, api, "app", "add", writeFile(t, "vault.json", `{"id": "/vault", "instances": 1, "cpus": 0.1, "mem": 32,
		"cmd": "head -c 300000 /dev/urandom > data/blob && exec python3 -m http.server $PORT0 --bind 127.0.0.1",
		"portDefinitions": [{"port": 0}],
		"healthChecks": [
			{"protocol": "HTTP", "path": "/", "portIndex": 0, "intervalSeconds": 1, "gracePeriodSeconds": 30},
			{"protocol": "COMMAND", "command": {"value": "test -f data/blob"}, "intervalSeconds": 1, "gracePeriodSeconds": 30, "delaySeconds": 0}
		],
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 8}}]},
		"backup": {"target": "file://`+target+`", "retention": {"keep": 5}}}`), "--wait")

	// Each health check's result shows on the instance, with its berth's
	// epoch.
	b.open(appRoute("/vault"))
	b.waitFor(2*time.Minute, "both health checks alive", `[...document.querySelectorAll("article.instance [data-testid=health-results] tbody tr")].filter(r =>
		r.innerText.includes("alive") && !r.innerText.includes("not alive")).length === 2`)
	if got := b.text("article.instance [data-testid=berth-epoch]"); got != "1" {
		t.Errorf("berth epoch shown: %q, want 1", got)
	}
	b.waitFor(uiTimeout, "the backups section", `!!document.querySelector("[data-testid=backup-create]") && document.querySelector("[data-testid=running]")?.innerText === "1"`)
	b.click("Create backup", "[data-testid=backup-create]")
	b.waitFor(uiTimeout, "the backup requested", `(document.querySelector("[data-testid=backup-notice]")?.innerText ?? "").startsWith("Backup requested")`)
	b.waitFor(3*time.Minute, "the backup succeeded with its totals", `[...document.querySelectorAll("[data-testid=backup-list] tbody tr")].some(r =>
		r.dataset.state === "SUCCEEDED" && !r.innerText.includes("0.0 MiB") && !!r.querySelector("[data-testid=backup-verify]"))`)
	b.click("Verify", "[data-testid=backup-list] tr[data-state=SUCCEEDED] [data-testid=backup-verify]")
	b.waitFor(2*time.Minute, "the verification", `/verified: [1-9][0-9]* chunks read, 0 missing, 0 corrupt/.test(document.querySelector("[data-testid=backup-notice]")?.innerText ?? "") &&
		(document.querySelector("[data-testid=backup-list] tr[data-state=SUCCEEDED] [data-testid=backup-verified]")?.innerText ?? "") !== ""`)

	b.click("Restore", "[data-testid=backup-list] tr[data-state=SUCCEEDED] [data-testid=backup-restore]")
	b.waitFor(uiTimeout, "the restore confirmation", `(document.querySelector("dialog[open][data-testid=confirm]")?.innerText ?? "").includes("current data of its volume is replaced")`)
	b.click("cancel the restore", "dialog[open] button:not([data-testid])")
	var list struct {
		Backups []backupJSON `json:"backups"`
	}
	cliJSON(t, api, &list, "backup", "list", "/vault")
	if len(list.Backups) != 1 || list.Backups[0].State != "BACKUP_STATE_SUCCEEDED" {
		t.Errorf("backups after the UI's: %+v", list.Backups)
	}
}

// TestUIAgentsDrain: the cluster page lists both agents of `berth dev
// --agents 2` as ACTIVE; the agent of a resident app's instance, drained
// from the UI, turns DRAINING or DRAINED and the instance's page says its
// agent is draining; reactivated, the agent is ACTIVE again and the
// instance runs. Marking an agent gone asks for a confirmation that says
// what is destroyed.
func TestUIAgentsDrain(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "2")
	waitAPI(t, api)
	b := newBrowser(t, api, "/pinned")
	mustCLI(t, api, "app", "add", writeFile(t, "pinned.json", `{"id": "/pinned", "cmd": "sleep 100000", "cpus": 0.05, "mem": 16, "instances": 1,
		"container": {"type": "MESOS", "volumes": [{"containerPath": "data", "mode": "RW", "persistent": {"size": 1}}]}}`), "--wait")
	var agentID string
	for _, tk := range tasksByInstance(t, api, "/pinned") {
		agentID = tk.AgentID
	}
	if agentID == "" {
		t.Fatal("the instance of /pinned has no agent")
	}

	b.open("#/cluster")
	b.waitFor(uiTimeout, "two active agents", `[...document.querySelectorAll("[data-testid=agents] [data-testid=agent-state]")].filter(c => c.innerText === "ACTIVE").length === 2`)
	row := fmt.Sprintf("[data-testid=agents] tr[data-agent=%q]", agentID)
	stateJS := fmt.Sprintf(`(document.querySelector(%s)?.querySelector("[data-testid=agent-state]")?.innerText ?? "")`, jsString(row))

	b.paste(row+" [data-testid=agent-grace]", "1")
	b.click("Drain", row+" [data-testid=agent-drain]")
	b.waitFor(time.Minute, "the agent draining", stateJS+`.startsWith("DRAIN")`)
	if a := agentsByID(t, api)[agentID]; !strings.HasPrefix(a.State, "DRAIN") {
		t.Errorf("the API says agent %s is %q after the UI drained it", agentID, a.State)
	}
	b.open(appRoute("/pinned"))
	b.waitFor(time.Minute, "the instance's agent notice", `(document.querySelector("article.instance [data-testid=agent-notice]")?.innerText ?? "").startsWith("agent draining")`)

	b.open("#/cluster")
	b.click("Reactivate", row+" [data-testid=agent-reactivate]")
	b.waitFor(time.Minute, "the agent active again", stateJS+` === "ACTIVE"`)
	b.open(appRoute("/pinned"))
	b.waitFor(2*time.Minute, "the instance running again without notice", `document.querySelector("article.instance")?.dataset.state === "TASK_RUNNING" &&
		!document.querySelector("article.instance [data-testid=agent-notice]")`)

	b.open("#/cluster")
	b.waitFor(uiTimeout, "the agents", `!!document.querySelector(`+jsString(row+" [data-testid=agent-gone]")+`)`)
	b.click("Mark gone", row+" [data-testid=agent-gone]")
	b.waitFor(uiTimeout, "the confirmation", `(document.querySelector("dialog[open][data-testid=confirm]")?.innerText ?? "").includes("persistent volumes on it, with their data, are destroyed")`)
	b.click("cancel", "dialog[open] button:not([data-testid])")
	b.waitFor(uiTimeout, "both agents still active", `[...document.querySelectorAll("[data-testid=agents] [data-testid=agent-state]")].filter(c => c.innerText === "ACTIVE").length === 2`)

	// A maintenance window of one hour from now, scheduled for the other
	// agent, shows on its row.
	other := fmt.Sprintf("[data-testid=agents] tr:not([data-agent=%q])", agentID)
	b.click("Maintenance", other+" details summary")
	b.click("Schedule", other+" [data-testid=agent-schedule]")
	b.waitFor(time.Minute, "the maintenance window", `(document.querySelector(`+jsString(other+" [data-testid=agent-maintenance]")+`)?.innerText ?? "").endsWith("for 1h0m0s")`)
}

// TestUIReadinessResults: a deployment whose new task never gets ready
// shows, on the deployments page, its current action with the readiness
// check's result and the check's last HTTP answer; the instance on the app
// page shows it too.
func TestUIReadinessResults(t *testing.T) {
	chromiumPath(t)
	api, mesosAddr := freePort(t), freePort(t)
	startProc(t, "dev", "dev", "--data-dir", t.TempDir(), "--api-addr", api, "--mesos-listen", mesosAddr, "--agents", "1")
	waitAPI(t, api)
	b := newBrowser(t, api, "/unready")
	mustCLI(t, api, "app", "add", writeFile(t, "unready.json", `{"id": "/unready", "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
		"cpus": 0.05, "mem": 32, "instances": 1, "portDefinitions": [{"port": 0, "name": "http"}],
		"readinessChecks": [{"name": "ready", "protocol": "HTTP", "path": "/ready", "portName": "http", "intervalSeconds": 1, "httpStatusCodesForReady": [200]}]}`))

	notReady := func(scope string) string {
		return fmt.Sprintf(`[...document.querySelectorAll(%s)].some(r => r.innerText.includes("not ready") && r.innerText.includes("HTTP 404"))`,
			jsString(scope+" [data-testid=readiness-results] tbody tr"))
	}
	b.open("#/deployments")
	b.waitFor(2*time.Minute, "the current action's readiness result", `(document.querySelector("[data-testid=current-action]")?.innerText ?? "").includes("/unready") && `+
		notReady("[data-testid=current-action]"))
	b.open(appRoute("/unready"))
	b.waitFor(time.Minute, "the instance's readiness result", notReady("article.instance"))
}
