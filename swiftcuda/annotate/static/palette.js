// The DAVIS palette (the colours of swiftcuda's indexed PNGs): label i's colour spreads the bits of i
// over red, green and blue, most significant first (as swiftcuda/io/palette.py).

export const PALETTE = (() => {
  const colours = new Uint8Array(256 * 3);
  for (let label = 0; label < 256; label++) {
    for (let shift = 0; shift < 8; shift++) {
      for (let channel = 0; channel < 3; channel++) {
        const bit = (label >> (3 * shift + channel)) & 1;
        colours[label * 3 + channel] |= bit << (7 - shift);
      }
    }
  }
  return colours;
})();

/** CSS colour of object `id`. */
export function cssColour(id) {
  return `rgb(${PALETTE[id * 3]}, ${PALETTE[id * 3 + 1]}, ${PALETTE[id * 3 + 2]})`;
}
