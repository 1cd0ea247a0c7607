// WebPage.swift — `GET /`: the reference's webcam front-end (webcam/frontend, a Svelte app) cut
// down to one page without build steps: it opens the camera, sends a reference (an uploaded
// portrait, or the first camera frame) and then JPEG frames over /v1/stream, and shows the camera
// and the generated frames side by side with the server's latency figures. `#status` and
// `data-frames` on the output image let a headless browser check that generated frames arrive.
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PersonaLive — live</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5em; background: #111; color: #eee; }
  .panes { display: flex; gap: 1em; }
  .pane { display: flex; flex-direction: column; gap: .3em; }
  video, img#output { width: 320px; height: 320px; object-fit: cover; background: #222; }
  #stats { font-family: monospace; white-space: pre; }
  button { font-size: 1em; }
</style>
</head>
<body>
<h1>PersonaLive</h1>
<p>Reference portrait: <input type="file" id="reference" accept="image/png,image/jpeg">
   (none: the first camera frame) <button id="start">Start</button> <button id="stop" disabled>Stop</button></p>
<div class="panes">
  <div class="pane"><span>camera</span><video id="camera" autoplay muted playsinline></video></div>
  <div class="pane"><span>generated</span><img id="output" alt="generated frames appear here" data-frames="0"></div>
</div>
<p id="status">idle</p>
<div id="stats"></div>
<canvas id="grab" width="256" height="256" hidden></canvas>
<script>
"use strict";
const camera = document.getElementById("camera");
const output = document.getElementById("output");
const statusLine = document.getElementById("status");
const statsBox = document.getElementById("stats");
const grab = document.getElementById("grab");
let socket = null, timer = null, inFlight = 0, received = 0, lastUrl = null;
const maxInFlight = 8;

function setStatus(text) { statusLine.textContent = text; }

function frameBlob(quality) {
  const ctx = grab.getContext("2d");
  const w = camera.videoWidth || 256, h = camera.videoHeight || 256, side = Math.min(w, h);
  ctx.drawImage(camera, (w - side) / 2, (h - side) / 2, side, side, 0, 0, grab.width, grab.height);
  return new Promise(resolve => grab.toBlob(resolve, "image/jpeg", quality));
}

async function start() {
  document.getElementById("start").disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    camera.srcObject = stream;
    await new Promise(resolve => { if (camera.readyState >= 2) resolve(); else camera.onloadeddata = resolve; });
  } catch (e) {
    setStatus("error: cannot open the camera (" + e + ")");
    document.getElementById("start").disabled = false;
    return;
  }
  const file = document.getElementById("reference").files[0];
  const reference = file ? file : await frameBlob(0.95);
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/v1/stream");
  socket.binaryType = "blob";
  socket.onopen = () => { setStatus("sending the reference"); socket.send(reference); };
  socket.onmessage = event => {
    if (typeof event.data === "string") {
      const msg = JSON.parse(event.data);
      if (msg.type === "ready") {
        setStatus("streaming (" + msg.size + "², chunks of " + msg.chunk + ", first frames after " + msg.latency_frames + ")");
        timer = setInterval(sendFrame, 40);
      } else if (msg.type === "stats") {
        const lat = msg.latency_ms.length ? Math.max(...msg.latency_ms).toFixed(0) + " ms" : "(warm-up)";
        statsBox.textContent = "frames in " + msg.frames_in + ", out " + msg.frames_out + "\nchunk " +
          msg.chunk_ms.toFixed(0) + " ms, latency " + lat + ", " + msg.fps.toFixed(1) + " FPS";
      } else if (msg.type === "error") {
        setStatus("error: " + msg.error);
      }
      return;
    }
    received += 1;
    inFlight = Math.max(0, inFlight - 1);
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = URL.createObjectURL(event.data);
    output.src = lastUrl;
    output.dataset.frames = String(received);
  };
  socket.onclose = event => { stopTimer(); if (!statusLine.textContent.startsWith("error")) setStatus("closed (" + event.code + ")"); };
  socket.onerror = () => setStatus("error: the WebSocket failed");
  document.getElementById("stop").disabled = false;
}

async function sendFrame() {
  if (!socket || socket.readyState !== WebSocket.OPEN || inFlight >= maxInFlight) return;
  inFlight += 1;
  const blob = await frameBlob(0.8);
  socket.send(blob);
}

function stopTimer() { if (timer) { clearInterval(timer); timer = null; } }

function stop() {
  stopTimer();
  if (socket) socket.close();
  if (camera.srcObject) camera.srcObject.getTracks().forEach(t => t.stop());
  document.getElementById("start").disabled = false;
  document.getElementById("stop").disabled = true;
}

document.getElementById("start").onclick = start;
document.getElementById("stop").onclick = stop;
if (new URLSearchParams(location.search).has("autostart")) start();
</script>
</body>
</html>
"""#
}
