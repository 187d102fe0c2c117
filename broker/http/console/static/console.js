// agent-broker console: vanilla JS over the JSON admin API (no build step, no inline script).
// Everything from the server goes in with textContent or setAttribute, never as HTML.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const byId = (id) => document.getElementById(id);
  let me = null;
  let nextCursor = null;

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = csrf;
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, init);
    if (response.status === 401) {  // the sign-in expired: start a fresh one
      window.location.assign("/admin/login");
      throw new Error("Your sign-in has expired.");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error((data && data.error_description) || `HTTP ${response.status}`);
    }
    return data;
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function when(epoch) {
    if (!epoch) return "";
    return new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function queryString(params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== "" && value !== null && value !== undefined) query.set(name, value);
    }
    return query.toString();
  }

  function say(text, isError) {
    const box = byId("message");
    box.textContent = text;
    box.className = isError ? "error" : "ok";
    box.hidden = !text;
  }

  // Runs an action; a failure is shown, never swallowed.
  function guarded(action) {
    return async (event) => {
      if (event && event.preventDefault) event.preventDefault();
      try {
        await action(event);
      } catch (error) {
        say(error.message, true);
      }
    };
  }

  function describeTarget(target) {
    const rest = Object.entries(target || {}).filter(([name]) => name !== "kind");
    return [target && target.kind, ...rest.map(([name, value]) => `${name}=${value}`)].join(" ");
  }

  // --- sessions ---------------------------------------------------------------------------
  function sessionFilters() {
    const form = byId("sessions-filter");
    // Without the right to list everyone's sessions, ask for one's own: the API would refuse.
    const user = me.can.list_all_sessions ? form.elements.user.value.trim() : me.subject;
    return { user, agent: form.elements.agent.value.trim() };
  }

  function sessionRow(session) {
    const expired = session.status === "active" && session.expires_at * 1000 <= Date.now();
    const status = expired ? "expired" : session.status;
    const row = el("tr", null, { "data-testid": "session-row", "data-sid": session.sid,
                                 "data-user": session.user, "data-status": status });
    const cells = [
      ["sid", session.sid, "mono"], ["user", session.user], ["chain", session.actors.join(" → ")],
      ["resource", session.resource, "mono"], ["scopes", session.scopes.join(" ")],
      ["created", when(session.created_at)], ["expires", when(session.expires_at)],
    ];
    for (const [name, text, cls] of cells) {
      row.append(el("td", text, { "data-testid": `session-${name}`, class: cls || "" }));
    }
    const statusCell = el("td", status, { "data-testid": "session-status",
                                          class: `status-${status}` });
    if (session.revoked_by) statusCell.title = `by the revocation of ${session.revoked_by}`;
    row.append(statusCell);
    const actions = el("td");
    if (status === "active") {
      const button = el("button", "Revoke", { type: "button", class: "danger",
                                              "data-testid": "session-revoke" });
      button.addEventListener("click", guarded(async () => {
        button.disabled = true;
        try {
          await api("POST", `/admin/sessions/${encodeURIComponent(session.sid)}/revoke`, {});
        } finally {
          button.disabled = false;
        }
        say(`Session ${session.sid} of ${session.user} revoked.`);
        await refresh();
      }));
      actions.append(button);
    }
    row.append(actions);
    return row;
  }

  async function loadSessions(more) {
    const params = { ...sessionFilters(), limit: 100, cursor: more ? nextCursor : 0 };
    const data = await api("GET", `/admin/sessions?${queryString(params)}`);
    const body = byId("sessions-body");
    const rows = data.sessions.map(sessionRow);
    if (more) body.append(...rows); else body.replaceChildren(...rows);
    nextCursor = data.next_cursor;
    byId("sessions-more").hidden = nextCursor === null || nextCursor === undefined;
    byId("sessions-empty").hidden = body.rows.length > 0;
  }

  // --- audit trail ------------------------------------------------------------------------
  function auditDetail(record) {
    if (record.type === "exchange") {
      const granted = (record.granted || []).join(" ") || "(nothing)";
      const dropped = (record.dropped || []).map((d) => `${d.scope} (${d.reason})`).join(", ");
      return `${record.resource}: granted ${granted}` + (dropped ? `; dropped ${dropped}` : "");
    }
    const reason = record.reason ? `: ${record.reason}` : "";
    return `revoked ${describeTarget(record.target)} by ${record.revoked_by}${reason}`;
  }

  function auditRow(record) {
    const agent = record.type === "exchange" ? (record.actors || []).join(" → ")
                                             : (record.agent || "");
    const row = el("tr", null, { "data-testid": "audit-row", "data-type": record.type || "" });
    const cells = [
      ["at", when(record.at)], ["type", record.type], ["user", record.user || ""],
      ["agent", agent], ["detail", auditDetail(record)],
      ["ref", record.sid || record.revocation_id || "", "mono"],
    ];
    for (const [name, text, cls] of cells) {
      row.append(el("td", text, { "data-testid": `audit-${name}`, class: cls || "" }));
    }
    return row;
  }

  async function loadAudit() {
    const form = byId("audit-filter");
    const params = {
      user: me.can.read_all_audit ? form.elements.user.value.trim() : me.subject,
      agent: form.elements.agent.value.trim(), type: form.elements.type.value, limit: 200,
    };
    const data = await api("GET", `/admin/audit?${queryString(params)}`);
    byId("audit-body").replaceChildren(...data.records.map(auditRow));
    byId("audit-empty").hidden = data.records.length > 0;
  }

  // --- revocations by user / agent (admins) -----------------------------------------------
  async function revokeGrain(event) {
    const form = event.target;
    const body = {};
    for (const name of ["user", "agent", "reason"]) {
      const value = form.elements[name].value.trim();
      if (value) body[name] = value;
    }
    if (!body.user && !body.agent) {
      say("Give a user, an agent, or both.", true);
      return;
    }
    const outcome = await api("POST", "/admin/revocations", body);
    form.reset();
    say(`Revoked ${describeTarget(outcome.target)} (${outcome.id}).`);
    await refresh();
  }

  async function refresh() {
    if (!byId("sessions-section").hidden) await loadSessions(false);
    if (!byId("audit-section").hidden) await loadAudit();
  }

  async function signOut() {
    await fetch("/admin/logout", { method: "POST", credentials: "same-origin",
                                   headers: { "X-CSRF-Token": csrf } });
    window.location.assign("/admin/signed-out");
  }

  async function start() {
    me = await api("GET", "/admin/me");
    byId("whoami-subject").textContent = me.subject;
    byId("whoami-roles").textContent = me.roles.length ? `(${me.roles.join(", ")})` : "";
    const sessionsFilter = byId("sessions-filter").elements.user;
    const auditFilter = byId("audit-filter").elements.user;
    for (const [input, all] of [[sessionsFilter, me.can.list_all_sessions],
                                [auditFilter, me.can.read_all_audit]]) {
      if (!all) {  // one's own only: show it, but it is not a choice
        input.value = me.subject;
        input.disabled = true;
      }
    }
    const self = me.can.list_own_sessions;
    byId("sessions-section").hidden = !(me.can.list_all_sessions || self);
    byId("audit-section").hidden = !(me.can.read_all_audit || self);
    byId("revoke-panel").hidden = !me.can.revoke_agents;
    byId("sessions-filter").addEventListener("submit", guarded(() => loadSessions(false)));
    byId("sessions-more").addEventListener("click", guarded(() => loadSessions(true)));
    byId("audit-filter").addEventListener("submit", guarded(loadAudit));
    byId("revoke-form").addEventListener("submit", guarded(revokeGrain));
    await refresh();
    document.body.dataset.ready = "true";
  }

  byId("logout").addEventListener("click", guarded(signOut));
  guarded(start)();
})();
