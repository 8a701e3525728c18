// The mask editor: paint on a canvas the size of the picture (white: repaint), send the
// canvas as a PNG with the prompt, then follow what the bot says.
(() => {
  const editor = document.getElementById("editor");
  if (!editor) return;
  const token = editor.dataset.token;
  const canvas = document.getElementById("mask");
  const ctx = canvas.getContext("2d");
  const brush = document.getElementById("brush");
  const erase = document.getElementById("erase");
  const status = document.getElementById("status");
  const send = document.getElementById("send");
  let painting = false;
  let last = null;

  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return { x: (event.clientX - box.left) * canvas.width / box.width, y: (event.clientY - box.top) * canvas.height / box.height };
  };
  const stroke = (from, to) => {
    ctx.globalCompositeOperation = erase.checked ? "destination-out" : "source-over";
    ctx.strokeStyle = "#fff";
    ctx.fillStyle = "#fff";
    ctx.lineWidth = Number(brush.value);
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  };
  canvas.addEventListener("pointerdown", (event) => { painting = true; last = at(event); stroke(last, last); canvas.setPointerCapture(event.pointerId); });
  canvas.addEventListener("pointermove", (event) => { if (!painting) return; const point = at(event); stroke(last, point); last = point; });
  const stop = () => { painting = false; last = null; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  document.getElementById("clear").addEventListener("click", () => ctx.clearRect(0, 0, canvas.width, canvas.height));

  const follow = async () => {
    for (let i = 0; i < 600; i++) {
      const answer = await (await fetch(`/draw/${token}/status`)).json();
      if (answer.status === "queued" || answer.status === "refused") {
        status.textContent = answer.message;
        status.dataset.state = answer.status;
        return;
      }
      await new Promise((done) => setTimeout(done, 1000));
    }
  };
  document.getElementById("draw-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    send.disabled = true;
    status.textContent = "Sending…";
    const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
    const body = new FormData();
    body.append("prompt", document.getElementById("prompt").value);
    body.append("mask", blob, "mask.png");
    const response = await fetch(`/draw/${token}`, { method: "POST", body });
    const answer = await response.json();
    if (!response.ok) {
      status.textContent = answer.error;
      status.dataset.state = "error";
      send.disabled = response.status === 409 || response.status === 403;
      return;
    }
    status.textContent = answer.message;
    follow();
  });
})();
