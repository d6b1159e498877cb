// The frame on screen: its picture, its masks over it (DAVIS colours, adjustable opacity, outlined),
// and a layer on top for the drawing tools. All three canvases have the frame's own pixel size and
// are scaled together by CSS to fit the stage.

import { PALETTE } from "annotate/palette.js";

export class Viewer {
  /**
   * @param {HTMLElement} box the element holding the three canvases
   * @param {number} width frame width in pixels
   * @param {number} height frame height in pixels
   */
  constructor(box, width, height) {
    this.box = box;
    this.width = width;
    this.height = height;
    this.frameCanvas = box.querySelector("#frame-canvas");
    this.maskCanvas = box.querySelector("#mask-canvas");
    this.toolCanvas = box.querySelector("#tool-canvas");
    for (const canvas of [this.frameCanvas, this.maskCanvas, this.toolCanvas]) {
      canvas.width = width;
      canvas.height = height;
    }
    this.frameContext = this.frameCanvas.getContext("2d");
    this.maskContext = this.maskCanvas.getContext("2d");
    this.toolContext = this.toolCanvas.getContext("2d");
    this.rgba = new ImageData(width, height);
    this.labels = null;
    this.opacity = 0.5;
    this.dimmed = false;
  }

  /** Size the canvases to the largest box of the frame's aspect that fits `maxWidth` x `maxHeight`. */
  fit(maxWidth, maxHeight) {
    const scale = Math.max(0.05, Math.min(maxWidth / this.width, maxHeight / this.height));
    this.scale = scale;
    this.box.style.width = `${Math.floor(this.width * scale)}px`;
    this.box.style.height = `${Math.floor(this.height * scale)}px`;
  }

  showPicture(bitmap) {
    this.frameContext.drawImage(bitmap, 0, 0, this.width, this.height);
  }

  clearPicture() {
    this.frameContext.fillStyle = "#0c0d10";
    this.frameContext.fillRect(0, 0, this.width, this.height);
  }

  /** Show `labels` (Uint8Array of width*height, or null); `dimmed` marks out-of-date masks. */
  showMask(labels, dimmed = false) {
    this.labels = labels;
    this.dimmed = dimmed;
    this.renderMask(0, 0, this.width, this.height);
  }

  setOpacity(opacity) {
    this.opacity = opacity;
    this.renderMask(0, 0, this.width, this.height);
  }

  /** Redraw the masks inside [x0, x1) x [y0, y1) (one pixel more for the outlines). */
  renderMask(x0, y0, x1, y1) {
    const { width, height, labels } = this;
    x0 = Math.max(0, Math.floor(x0) - 1);
    y0 = Math.max(0, Math.floor(y0) - 1);
    x1 = Math.min(width, Math.ceil(x1) + 1);
    y1 = Math.min(height, Math.ceil(y1) + 1);
    if (x1 <= x0 || y1 <= y0) return;
    // One 32-bit write a pixel, from two 256-entry tables: fill and outline colours.
    const fill = Math.round(255 * this.opacity * (this.dimmed ? 0.55 : 1));
    const [inside, outline] = [rgbaTable(fill), rgbaTable(this.dimmed ? 150 : 255)];
    const pixels = new Uint32Array(this.rgba.data.buffer);
    for (let y = y0; y < y1; y++) {
      let p = y * width + x0;
      if (labels === null) {
        pixels.fill(0, p, p + x1 - x0);
        continue;
      }
      const up = y > 0 ? -width : 0;
      const down = y < height - 1 ? width : 0;
      for (let x = x0; x < x1; x++, p++) {
        const label = labels[p];
        if (label === 0) {
          pixels[p] = 0;
          continue;
        }
        // A pixel is on an outline when a 4-neighbour holds another label.
        const edge = (x > 0 && labels[p - 1] !== label) || (x < width - 1 && labels[p + 1] !== label)
          || labels[p + up] !== label || labels[p + down] !== label;
        pixels[p] = edge ? outline[label] : inside[label];
      }
    }
    this.maskContext.putImageData(this.rgba, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  /** The frame pixel under a pointer event (fractional, may lie outside the frame). */
  toFrame(event) {
    const rect = this.toolCanvas.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) / rect.width) * this.width,
      y: ((event.clientY - rect.top) / rect.height) * this.height,
    };
  }

  /** One screen pixel in frame pixels (for line widths and hit distances). */
  get screenPixel() {
    const rect = this.toolCanvas.getBoundingClientRect();
    return rect.width > 0 ? this.width / rect.width : 1;
  }

  clearTools() {
    this.toolContext.clearRect(0, 0, this.width, this.height);
  }
}

const tables = new Map();

/** The 256 palette colours with alpha `alpha`, as the 32-bit words ImageData holds (little-endian RGBA). */
function rgbaTable(alpha) {
  if (!tables.has(alpha)) {
    const table = new Uint32Array(256);
    for (let label = 1; label < 256; label++) {
      table[label] = ((alpha << 24) | (PALETTE[label * 3 + 2] << 16) | (PALETTE[label * 3 + 1] << 8) | PALETTE[label * 3]) >>> 0;
    }
    tables.set(alpha, table);
  }
  return tables.get(alpha);
}
