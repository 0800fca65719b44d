// The home page: the progress of a running `avid process` on this store, polled every two seconds.
(function () {
  "use strict";
  const box = document.getElementById("progress");
  async function poll() {
    try {
      const response = await fetch(box.dataset.url, {headers: {Accept: "application/json"}});
      const state = response.ok ? await response.json() : null;
      box.hidden = !state;
      if (state) {
        box.textContent = `avid process is running: ${state.done} done, ${state.failed} failed, ` +
                          `${state.left} left of ${state.total}`;
      }
    } catch (error) { /* the server stopped: keep what is shown */ }
  }
  setInterval(poll, 2000);
})();
