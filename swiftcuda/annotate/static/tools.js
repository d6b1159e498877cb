// The drawing tools: box (refined by GrabCut on the server), brush and eraser with a size, polygon.
// Brush strokes and polygons are drawn straight into the frame's labels (one byte a pixel, no
// anti-aliasing: a pixel is in when its centre is).

/** Set every pixel whose centre lies within `radius` of (cx, cy) to `value`; returns the touched box. */
export function stampDisc(labels, width, height, cx, cy, radius, value) {
  const x0 = Math.max(0, Math.floor(cx - radius));
  const x1 = Math.min(width - 1, Math.ceil(cx + radius));
  const y0 = Math.max(0, Math.floor(cy - radius));
  const y1 = Math.min(height - 1, Math.ceil(cy + radius));
  const r2 = radius * radius;
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    for (let x = x0; x <= x1; x++) {
      const dx = x + 0.5 - cx;
      if (dx * dx + dy * dy <= r2) labels[y * width + x] = value;
    }
  }
  return [x0, y0, x1 + 1, y1 + 1];
}

/** Discs along the segment from a to b, close enough to leave no gaps; returns the touched box. */
export function stampSegment(labels, width, height, a, b, radius, value) {
  const length = Math.hypot(b.x - a.x, b.y - a.y);
  const steps = Math.max(1, Math.ceil(length / Math.max(0.5, radius / 2)));
  let box = null;
  for (let i = 0; i <= steps; i++) {
    const t = i / steps;
    box = union(box, stampDisc(labels, width, height, a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, radius, value));
  }
  return box;
}

/** Set the pixels whose centres lie inside the polygon (even-odd rule) to `value`; returns the box. */
export function fillPolygon(labels, width, height, points, value) {
  const ys = points.map((p) => p.y);
  const y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const y1 = Math.min(height - 1, Math.ceil(Math.max(...ys)));
  let minX = width;
  let maxX = -1;
  for (let y = y0; y <= y1; y++) {
    const cy = y + 0.5;
    const crossings = [];
    for (let i = 0; i < points.length; i++) {
      const a = points[i];
      const b = points[(i + 1) % points.length];
      if ((a.y <= cy) !== (b.y <= cy)) crossings.push(a.x + ((cy - a.y) / (b.y - a.y)) * (b.x - a.x));
    }
    crossings.sort((p, q) => p - q);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      const from = Math.max(0, Math.ceil(crossings[k] - 0.5));
      const to = Math.min(width - 1, Math.floor(crossings[k + 1] - 0.5));
      for (let x = from; x <= to; x++) labels[y * width + x] = value;
      if (from <= to) {
        minX = Math.min(minX, from);
        maxX = Math.max(maxX, to);
      }
    }
  }
  return maxX < 0 ? null : [minX, y0, maxX + 1, y1 + 1];
}

export function union(a, b) {
  if (a === null) return b;
  if (b === null) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

export const TOOL_HELP = {
  box: "Drag a box around the selected object: GrabCut finds the object inside and replaces its mask.",
  brush: "Paint the selected object (over anything). [ and ] change the size.",
  eraser: "Paint background: erases every object under the brush.",
  polygon: "Click the corners; click the first corner, double-click or press Enter to fill with the selected object. Hold Shift while closing to erase instead. Backspace removes a corner, Esc cancels.",
};

/**
 * Pointer handling for the tools on the viewer's top canvas.
 *
 * `host` provides: viewer, tool (name), brushRadius, canEdit() (false shows why and refuses),
 * beginEdit() (before a change: keeps the undo step), labelsForEdit() (the labels to change),
 * selectedId(), changed(box) (redraw), endEdit() (save), box(rect) (a box drawn).
 */
export class ToolController {
  constructor(host) {
    this.host = host;
    this.drag = null; // {start, last} while a box or stroke is drawn
    this.polygon = []; // corners of the polygon being drawn
    this.hover = null;
    this.previewShown = false; // whether the tool canvas holds a preview (else it is left alone)
    const canvas = host.viewer.toolCanvas;
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    canvas.addEventListener("pointerup", (event) => this.up(event));
    canvas.addEventListener("pointercancel", () => this.cancel());
    canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.draw();
    });
    canvas.addEventListener("dblclick", (event) => {
      if (this.host.tool === "polygon") this.closePolygon(event.shiftKey);
    });
  }

  get viewer() {
    return this.host.viewer;
  }

  down(event) {
    if (event.button !== 0) return;
    const point = this.viewer.toFrame(event);
    const tool = this.host.tool;
    if (!this.host.canEdit()) return;
    this.viewer.toolCanvas.setPointerCapture(event.pointerId);
    if (tool === "polygon") {
      const near = this.polygon.length >= 3 && this.distance(point, this.polygon[0]) <= 8 * this.viewer.screenPixel;
      if (near) this.closePolygon(event.shiftKey);
      else this.polygon.push(point);
      this.draw();
      return;
    }
    this.drag = { start: point, last: point };
    if (tool === "brush" || tool === "eraser") {
      this.host.beginEdit();
      this.paint(point, point);
    }
    this.draw();
  }

  move(event) {
    const point = this.viewer.toFrame(event);
    this.hover = point;
    if (this.drag !== null && (this.host.tool === "brush" || this.host.tool === "eraser")) {
      this.paint(this.drag.last, point);
    }
    if (this.drag !== null) this.drag.last = point;
    this.draw();
  }

  up(event) {
    if (this.drag === null) return;
    const { start, last } = this.drag;
    this.drag = null;
    const tool = this.host.tool;
    if (tool === "brush" || tool === "eraser") {
      this.host.endEdit();
    } else if (tool === "box") {
      const rect = [start.x, start.y, last.x, last.y].map(Math.round);
      if (Math.abs(rect[2] - rect[0]) >= 3 && Math.abs(rect[3] - rect[1]) >= 3) this.host.box(rect);
    }
    this.draw();
  }

  cancel() {
    if (this.drag !== null && (this.host.tool === "brush" || this.host.tool === "eraser")) this.host.endEdit();
    this.drag = null;
    this.polygon = [];
    this.draw();
  }

  paint(a, b) {
    const { width, height } = this.viewer;
    const value = this.host.tool === "eraser" ? 0 : this.host.selectedId();
    const box = stampSegment(this.host.labelsForEdit(), width, height, a, b, this.host.brushRadius, value);
    this.host.changed(box);
  }

  closePolygon(erase = false) {
    // A double-click's own clicks added corners on top of the last one: drop them.
    const near = 2 * this.viewer.screenPixel;
    this.polygon = this.polygon.filter((p, i) => i === 0 || this.distance(p, this.polygon[i - 1]) > near);
    if (this.polygon.length < 3) return;
    if (!this.host.canEdit()) return;
    const { width, height } = this.viewer;
    this.host.beginEdit();
    const value = erase ? 0 : this.host.selectedId();
    const box = fillPolygon(this.host.labelsForEdit(), width, height, this.polygon, value);
    this.polygon = [];
    if (box !== null) this.host.changed(box);
    this.host.endEdit();
    this.draw();
  }

  removeCorner() {
    this.polygon.pop();
    this.draw();
  }

  distance(a, b) {
    return Math.hypot(a.x - b.x, a.y - b.y);
  }

  /** The tool's preview: the box being drawn, the brush's outline, the polygon so far. */
  draw() {
    const tool = this.host.tool;
    const box = tool === "box" && this.drag !== null;
    const brush = (tool === "brush" || tool === "eraser") && this.hover !== null;
    const polygon = tool === "polygon" && this.polygon.length > 0;
    // Clearing an empty canvas still makes the browser composite the frame again: while the page
    // follows the engine that is CPU the engine needs.
    if (!box && !brush && !polygon && !this.previewShown) return;
    this.previewShown = box || brush || polygon;
    const viewer = this.viewer;
    const context = viewer.toolContext;
    const px = viewer.screenPixel;
    viewer.clearTools();
    context.lineWidth = 1.5 * px;
    if (box) {
      const { start, last } = this.drag;
      context.setLineDash([6 * px, 4 * px]);
      context.strokeStyle = "#ffffff";
      context.strokeRect(start.x, start.y, last.x - start.x, last.y - start.y);
      context.setLineDash([]);
    }
    if (brush) {
      context.beginPath();
      context.arc(this.hover.x, this.hover.y, this.host.brushRadius, 0, 2 * Math.PI);
      context.strokeStyle = tool === "eraser" ? "#ff8080" : "#ffffff";
      context.stroke();
    }
    if (polygon) {
      context.beginPath();
      context.moveTo(this.polygon[0].x, this.polygon[0].y);
      for (const point of this.polygon.slice(1)) context.lineTo(point.x, point.y);
      if (this.hover !== null) context.lineTo(this.hover.x, this.hover.y);
      context.strokeStyle = "#ffffff";
      context.stroke();
      for (const [i, point] of this.polygon.entries()) {
        context.beginPath();
        context.arc(point.x, point.y, (i === 0 ? 5 : 3) * px, 0, 2 * Math.PI);
        context.fillStyle = i === 0 ? "#4f8cff" : "#ffffff";
        context.fill();
      }
    }
  }
}
