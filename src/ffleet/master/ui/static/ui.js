// ffleet dashboard: live regions over Server-Sent Events, actions through the JSON API.
// No inline script, no eval: the page's Content-Security-Policy allows only this file.
// Every request carries X-FFleet-UI: 1, without which the master takes the session cookie
// for reads only (another site's page cannot add that header).
"use strict";

(function () {
  const state = document.getElementById("live-state");
  const notice = document.getElementById("notice");

  function say(text, isError) {
    notice.textContent = text;
    notice.className = isError ? "notice notice-error" : "notice notice-ok";
  }

  function ago(seconds) {
    if (seconds < 120) return Math.round(seconds) + " s ago";
    if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
    return (seconds / 3600).toFixed(1) + " h ago";
  }

  function tick() {
    const now = Date.now() / 1000;
    document.querySelectorAll("time[data-since]").forEach(function (el) {
      const since = parseFloat(el.dataset.since);
      if (!isNaN(since)) el.textContent = ago(Math.max(0, now - since));
    });
  }

  function setState(name) {
    if (!state) return;
    state.dataset.state = name;
    state.textContent = name;
  }

  // Each event carries the whole region: a reconnect catches up with its first event.
  function connect(region) {
    const source = new EventSource(region.dataset.live);
    source.addEventListener("open", function () { setState("live"); });
    source.addEventListener("region", function (event) {
      region.innerHTML = event.data;
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      tick();
    });
    source.addEventListener("gone", function (event) {
      say(event.data, true);
      source.close();
      setState("ended");
    });
    // The token was revoked or expired: reloading takes the browser to the sign-in page.
    source.addEventListener("signed-out", function () {
      source.close();
      location.reload();
    });
    source.addEventListener("error", function () { setState("reconnecting"); });
  }

  async function call(method, path, body, token) {
    const options = {
      method: method,
      headers: { "Accept": "application/json", "X-FFleet-UI": "1" },
    };
    if (token !== undefined) options.headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      throw new Error("cannot reach the master: " + err.message);
    }
    let reply = null;
    try { reply = await response.json(); } catch (err) { reply = null; }
    if (!response.ok) {
      const why = reply && reply.error ? reply.error : response.statusText;
      throw new Error(why + " (HTTP " + response.status + ")");
    }
    return reply;
  }

  // The same conversion as `ffleet submit --param`: numbers become numbers.
  function parameters(text) {
    const values = {};
    text.split("\n").map(function (line) { return line.trim(); }).filter(Boolean)
      .forEach(function (line) {
        const eq = line.indexOf("=");
        if (eq < 1) throw new Error("parameter " + JSON.stringify(line) + " is not KEY=VALUE");
        const raw = line.slice(eq + 1).trim();
        const number = Number(raw);
        values[line.slice(0, eq).trim()] = raw !== "" && !isNaN(number) ? number : raw;
      });
    return values;
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    try {
      await call("POST", button.dataset.action, button.dataset.body || undefined);
      say(button.textContent.trim() + ": done", false);
    } catch (err) {
      say(button.textContent.trim() + " refused: " + err.message, true);
      button.disabled = false;
    }
  });

  const form = document.getElementById("submit-form");
  if (form) {
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const data = new FormData(form);
      try {
        const request = {
          scenario: String(data.get("scenario")).trim(),
          parameters: parameters(String(data.get("parameters") || "")),
          priority: String(data.get("priority")),
          max_attempts: Number(data.get("max_attempts")),
        };
        const repeats = Number(data.get("repeats") || 1);
        let created;
        if (repeats > 1) {
          const jobs = [];
          for (let i = 0; i < repeats; i++) jobs.push(request);
          created = (await call("POST", "/jobs/batch", { jobs: jobs })).jobs;
        } else {
          created = [await call("POST", "/jobs", request)];
        }
        say("submitted " + created.length + " job(s): " +
          created.map(function (job) { return job.id.slice(0, 8); }).join(", "), false);
      } catch (err) {
        say("submit refused: " + err.message, true);
      }
    });
  }

  const signIn = document.getElementById("sign-in-form");
  if (signIn) {
    signIn.addEventListener("submit", async function (event) {
      event.preventDefault();
      const token = String(new FormData(signIn).get("token") || "").trim();
      try {
        await call("POST", "/ui/session", undefined, token);
        location.assign(signIn.dataset.next || "/ui");
      } catch (err) {
        say("sign-in refused: " + err.message, true);
      }
    });
  }

  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.addEventListener("click", async function () {
      try {
        await call("POST", "/ui/sign-out");
        location.assign("/ui/sign-in");
      } catch (err) {
        say("sign-out failed: " + err.message, true);
      }
    });
  }

  document.querySelectorAll("[data-live]").forEach(function (region) {
    if (region.dataset.live) connect(region);
  });
  tick();
  setInterval(tick, 1000);
})();
