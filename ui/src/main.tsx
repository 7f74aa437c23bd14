import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { aclClient, errorText, getToken, isUnauthenticated, setToken } from "./api";
import { AppPage } from "./pages/app";
import { AppsPage } from "./pages/apps";
import { ClusterPage } from "./pages/cluster";
import { DeploymentsPage } from "./pages/deployments";
import { EditPage } from "./pages/edit";
import { EventsPage } from "./pages/events";
import { Link } from "./util";
import "./style.css";

// The route is the part of the URL after "#", so that the server serves
// one static page under /ui/ and every view can be linked to.
function useRoute(): string {
  const [route, setRoute] = useState(location.hash.slice(1) || "/apps");
  useEffect(() => {
    const f = () => setRoute(location.hash.slice(1) || "/apps");
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return route;
}

function page(route: string) {
  const [, head, ...rest] = route.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  switch (head) {
    case "app":
      return <AppPage key={arg} id={arg} />;
    case "edit":
      return <EditPage key={arg} id={arg} />;
    case "new":
      return <EditPage key="new" />;
    case "deployments":
      return <DeploymentsPage />;
    case "cluster":
      return <ClusterPage />;
    case "events":
      return <EventsPage />;
    default:
      return <AppsPage />;
  }
}

// TokenForm keeps the ACL token in session storage and says whose it is.
function TokenForm() {
  const [value, setValue] = useState(getToken());
  const [who, setWho] = useState("");
  const check = async () => {
    if (!getToken()) {
      setWho("");
      return;
    }
    try {
      const res = await aclClient.tokenSelf({});
      setWho(`${res.token?.description || res.token?.accessorId} (${res.token ? policyName(res.token.policy) : ""})`);
    } catch (e) {
      setWho(isUnauthenticated(e) ? "token not accepted" : errorText(e));
    }
  };
  useEffect(() => {
    check();
  }, []);
  return (
    <form
      class="token"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        check();
      }}
    >
      <label for="token">ACL token</label>
      <input
        id="token"
        type="password"
        autocomplete="off"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
        placeholder="none"
        data-testid="token"
      />
      <button type="submit" data-testid="token-save">
        Use token
      </button>
      {getToken() && (
        <button
          type="button"
          onClick={() => {
            setValue("");
            setToken("");
            setWho("");
          }}
        >
          Forget
        </button>
      )}
      <span class="who" aria-live="polite" data-testid="token-who">
        {who}
      </span>
    </form>
  );
}

const policies = ["", "read", "write", "operator", "management"];
function policyName(p: number): string {
  return policies[p] ?? String(p);
}

function Shell() {
  const route = useRoute();
  const nav: [string, string][] = [
    ["/apps", "Apps"],
    ["/deployments", "Deployments"],
    ["/cluster", "Cluster"],
    ["/events", "Events"],
  ];
  const current = "/" + route.split("/")[1];
  return (
    <>
      <a href="#main" class="skip" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header>
        <span class="brand">Berth</span>
        <nav aria-label="Main">
          {nav.map(([to, label]) => (
            <Link key={to} to={to} aria-current={current === to || (to === "/apps" && ["/app", "/new", "/edit"].includes(current)) ? "page" : undefined}>
              {label}
            </Link>
          ))}
        </nav>
        <TokenForm />
      </header>
      <main id="main" tabIndex={-1}>
        {page(route)}
      </main>
    </>
  );
}

render(<Shell />, document.getElementById("root")!);
