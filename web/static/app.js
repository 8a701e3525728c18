// Copy prompt, and likes without leaving the page (the forms work without JavaScript too).
document.addEventListener("click", async (event) => {
  const copy = event.target.closest("#copy");
  if (copy) {
    try { await navigator.clipboard.writeText(copy.dataset.copy); copy.textContent = "Copied"; }
    catch { window.prompt("Copy the prompt:", copy.dataset.copy); }
  }
});
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form.like");
  if (!form) return;
  event.preventDefault();
  const response = await fetch(form.action, { method: "POST", body: new FormData(form), headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const state = await response.json();
  const button = form.querySelector("button");
  form.querySelector("input[name=liked]").value = state.liked ? "0" : "1";
  button.setAttribute("aria-pressed", state.liked ? "true" : "false");
  button.innerHTML = `${state.liked ? "♥ Liked" : "♡ Like"} · <span id="likes">${state.likes}</span>`;
});
