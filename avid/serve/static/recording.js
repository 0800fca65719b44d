// The recording page: the timeline of who speaks when under the player, the current speaker highlighted as it
// plays (and the transcript line), and the face boxes drawn over the video. Data: #recording-data (JSON).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("recording-data").textContent);
  const player = document.getElementById("player");
  const picture = document.getElementById("picture");
  const boxes = document.getElementById("boxes");
  const timeline = document.getElementById("timeline");
  const lines = Array.from(document.querySelectorAll("#transcript li"));
  const turns = [];

  function duration() {
    const known = player && isFinite(player.duration) ? player.duration : 0;
    return Math.max(known, ...data.turns.map(t => t.end), ...data.faces.map(f => f.end), 1);
  }

  function layout() {                          // one row per speaker, each turn placed by its times
    timeline.textContent = "";
    turns.length = 0;
    const total = duration();
    for (const speaker of data.speakers) {
      const row = document.createElement("div");
      row.className = "row";
      const label = document.createElement("span");
      label.className = "who";
      label.textContent = speaker;
      const track = document.createElement("div");
      track.className = "track";
      row.append(label, track);
      for (const turn of data.turns.filter(t => t.label === speaker)) {
        const bar = document.createElement("button");
        bar.className = "turn";
        bar.dataset.label = turn.label;
        bar.dataset.start = turn.start;
        bar.dataset.end = turn.end;
        bar.title = `${turn.label}: ${turn.start.toFixed(1)}–${turn.end.toFixed(1)} s`;
        bar.style.left = (100 * turn.start / total) + "%";
        bar.style.width = Math.max(0.3, 100 * (turn.end - turn.start) / total) + "%";
        bar.addEventListener("click", () => seek(turn.start));
        track.append(bar);
        turns.push({bar, turn});
      }
      timeline.append(row);
    }
    const cursor = document.createElement("div");
    cursor.id = "cursor";
    cursor.className = "cursor";
    timeline.append(cursor);
  }

  function seek(time) {
    if (!player) return;
    player.currentTime = time;
    player.play().catch(() => {});
  }

  function drawBoxes(time, media, width, height) {
    boxes.textContent = "";
    if (!media || !width) return;
    const scale = media.clientWidth / width;
    boxes.style.width = media.clientWidth + "px";
    boxes.style.height = (height * scale) + "px";
    for (const face of data.faces) {
      if (!face.box || (time !== null && (time < face.start || time > face.end))) continue;
      const [x1, y1, x2, y2] = face.box;
      const box = document.createElement("div");
      box.className = "box" + (speakingNow.has(face.label) ? " speaking" : "");
      box.style.left = (x1 * scale) + "px";
      box.style.top = (y1 * scale) + "px";
      box.style.width = ((x2 - x1) * scale) + "px";
      box.style.height = ((y2 - y1) * scale) + "px";
      box.textContent = face.label;
      boxes.append(box);
    }
  }

  let speakingNow = new Set();
  function update() {
    const time = player ? player.currentTime : 0;
    speakingNow = new Set();
    for (const {bar, turn} of turns) {
      const now = time >= turn.start && time < turn.end;
      bar.classList.toggle("now", now);
      if (now) speakingNow.add(turn.label);
    }
    document.body.dataset.speaking = Array.from(speakingNow).join(", ");
    for (const line of lines) {
      line.classList.toggle("now", time >= +line.dataset.start && time < +line.dataset.end);
    }
    const cursor = document.getElementById("cursor");
    if (cursor) cursor.style.left = `calc(var(--who) + (100% - var(--who)) * ${time / duration()})`;
    if (player && player.tagName === "VIDEO") drawBoxes(time, player, player.videoWidth, player.videoHeight);
  }

  function loop() {                            // smoother than timeupdate (4 times a second) while playing
    update();
    if (player && !player.paused) requestAnimationFrame(loop);
  }

  for (const line of lines) {
    line.querySelector(".time").addEventListener("click", event => { event.preventDefault(); seek(+line.dataset.start); });
  }
  layout();
  if (player) {
    player.addEventListener("loadedmetadata", () => {
      layout();
      if (data.start) player.currentTime = data.start;
      update();
    });
    player.addEventListener("play", loop);
    for (const name of ["seeked", "timeupdate", "pause"]) player.addEventListener(name, update);
    window.addEventListener("resize", update);
  } else if (picture) {
    const show = () => drawBoxes(null, picture, picture.naturalWidth, picture.naturalHeight);
    picture.complete ? show() : picture.addEventListener("load", show);
    window.addEventListener("resize", show);
  }
  update();
})();
