// The talking face: SVG mouth shapes A–H and X (Rhubarb Lip Sync's set), driven by timed cues.
// Cues arrive with each spoken sentence; times are relative to that sentence's audio, which the
// player schedules on the AudioContext clock, so the mouth follows the sound actually playing.
const MOUTHS = {
  X: ["M76 140 q24 4 48 0 q-24 3 -48 0z", ""],
  A: ["M80 139 h40 v3 h-40z", ""],
  B: ["M76 136 q24 -4 48 0 q-24 12 -48 0z", "M80 136 q20 -3 40 0 v3 h-40z"],
  C: ["M76 132 q24 -8 48 0 q-24 26 -48 0z", "M82 131 q18 -4 36 0 v3 h-36z"],
  D: ["M72 127 q28 -10 56 0 q-28 42 -56 0z", "M80 126 q20 -5 40 0 v4 h-40z"],
  E: ["M83 133 q17 -8 34 0 q-17 22 -34 0z", ""],
  F: ["M91 140 a9 8 0 1 0 18 0 a9 8 0 1 0 -18 0z", ""],
  G: ["M76 137 q24 -5 48 0 q-24 8 -48 0z", "M80 134 h40 v4 h-40z"],
  H: ["M76 132 q24 -8 48 0 q-24 24 -48 0z", "M88 142 q12 -8 24 0z"],
};
const Face = {
  cues: [],          // {start, end, value} in AudioContext seconds
  history: [],       // shapes shown while speaking (for tests and curiosity)
  clock: null,       // the AudioContext whose currentTime drives the mouth
  show(shape) {
    const svg = document.getElementById("face");
    if (!svg || svg.dataset.shape === shape) return;
    svg.dataset.shape = shape;
    document.getElementById("mouth").setAttribute("d", MOUTHS[shape][0]);
    document.getElementById("teeth").setAttribute("d", MOUTHS[shape][1]);
    if (shape !== "X" || this.history.length) this.history.push(shape);
  },
  schedule(cues, start) {
    for (const cue of cues) this.cues.push({start: start + cue.start, end: start + cue.end, value: cue.value});
  },
  stop() { this.cues = []; this.show("X"); },
  tick() {
    const now = this.clock ? this.clock.currentTime : 0;
    while (this.cues.length && this.cues[0].end < now) this.cues.shift();
    const cue = this.cues.find(c => c.start <= now && now < c.end);
    this.show(cue ? cue.value : "X");
  },
};
window.lorebookFace = Face;
document.getElementById("mouth").setAttribute("d", MOUTHS.X[0]);
setInterval(() => Face.tick(), 15);  // a timer, not rAF: keeps time in background tabs too
