// The timeline: a strip with every frame's kind (drawn, propagated, out of date, none) and the
// current frame; clicking or dragging on it, the slider below, the arrow buttons and the keyboard
// all scrub.

const KIND_COLOURS = { given: "#f5f5f5", predicted: "#3fb950", stale: "#e3a008", none: "#3a3f4a" };

export class Timeline {
  /**
   * @param {number} count frames in the video
   * @param {(index: number, how: string) => void} onScrub called with the frame the user asks for
   */
  constructor(count, onScrub) {
    this.count = count;
    this.onScrub = onScrub;
    this.runs = [["none", 0, count - 1]];
    this.current = 0;
    this.engineFrame = null;
    this.strip = document.getElementById("strip");
    this.slider = document.getElementById("scrub");
    this.slider.max = String(count - 1);
    this.slider.addEventListener("input", () => this.onScrub(Number(this.slider.value), "user"));
    document.getElementById("prev").addEventListener("click", () => this.onScrub(this.current - 1, "user"));
    document.getElementById("next").addEventListener("click", () => this.onScrub(this.current + 1, "user"));
    let dragging = false;
    const scrubAt = (event) => {
      const rect = this.strip.getBoundingClientRect();
      const index = Math.floor(((event.clientX - rect.left) / rect.width) * this.count);
      this.onScrub(Math.min(this.count - 1, Math.max(0, index)), "user");
    };
    this.strip.addEventListener("pointerdown", (event) => {
      dragging = true;
      this.strip.setPointerCapture(event.pointerId);
      scrubAt(event);
    });
    this.strip.addEventListener("pointermove", (event) => dragging && scrubAt(event));
    this.strip.addEventListener("pointerup", () => { dragging = false; });
    this.drawPending = false;
    new ResizeObserver(() => this.draw()).observe(this.strip);
  }

  setRuns(runs) {
    if (JSON.stringify(runs) === JSON.stringify(this.runs)) return;
    this.runs = runs;
    this.draw();
  }

  setCurrent(index) {
    this.current = index;
    this.slider.value = String(index);
    this.draw();
  }

  setEngineFrame(index) {
    if (index === this.engineFrame) return;
    this.engineFrame = index;
    this.draw();
  }

  /** The kind of frame `index` according to the last runs received. */
  kindOf(index) {
    for (const [kind, first, last] of this.runs) if (first <= index && index <= last) return kind;
    return "none";
  }

  /** Redraw at the next animation frame: a status poll that moves several marks draws once. */
  draw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.paint();
    });
  }

  paint() {
    const strip = this.strip;
    const width = Math.max(1, Math.round(strip.clientWidth * devicePixelRatio));
    const height = Math.max(1, Math.round(strip.clientHeight * devicePixelRatio));
    if (strip.width !== width || strip.height !== height) {
      strip.width = width;
      strip.height = height;
    }
    const context = strip.getContext("2d");
    const perFrame = width / this.count;
    for (const [kind, first, last] of this.runs) {
      context.fillStyle = KIND_COLOURS[kind] ?? KIND_COLOURS.none;
      context.fillRect(Math.floor(first * perFrame), 0, Math.ceil((last - first + 1) * perFrame) + 1, height);
    }
    if (this.engineFrame !== null) {
      context.fillStyle = "#4f8cff";
      context.fillRect(Math.floor(this.engineFrame * perFrame), 0, Math.max(2, perFrame), height);
    }
    const x = Math.floor((this.current + 0.5) * perFrame);
    context.fillStyle = "#ffffff";
    context.fillRect(x - 2, 0, 4, height);
    context.fillStyle = "#000000";
    context.fillRect(x - 1, 0, 2, height);
  }
}
