// Word-level differences between two translations: the longest common subsequence (LCS) of
// their words; a word outside it differs. Whitespace is kept as its own token so that a
// column renders exactly its text.

/** Split `text` into tokens: words and the whitespace runs between them. */
export function tokens(text) {
  return text.split(/(\s+)/).filter((t) => t !== "");
}

const isSpace = (t) => /^\s+$/.test(t);

// LCS tables grow as n*m; past this many cells (2000 x 2000 words) no highlighting is done.
export const MAX_CELLS = 4_000_000;

/**
 * Which words of `a` and of `b` lie outside a longest common subsequence of their words.
 * Returns {a: [{text, same}], b: [{text, same}]} over tokens (whitespace tokens: same=true),
 * or null when the texts are too long to compare.
 */
export function wordDiff(a, b) {
  const ta = tokens(a), tb = tokens(b);
  const wa = ta.map((t, i) => [t, i]).filter(([t]) => !isSpace(t));
  const wb = tb.map((t, i) => [t, i]).filter(([t]) => !isSpace(t));
  const n = wa.length, m = wb.length;
  if ((n + 1) * (m + 1) > MAX_CELLS) return null;
  // len[i][j]: LCS length of wa[i:] and wb[j:], one flat array of (n+1) x (m+1)
  const w = m + 1, len = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      len[i * w + j] = wa[i][0] === wb[j][0] ? len[(i + 1) * w + j + 1] + 1
        : Math.max(len[(i + 1) * w + j], len[i * w + j + 1]);
    }
  }
  const sameA = new Set(), sameB = new Set();
  for (let i = 0, j = 0; i < n && j < m;) {
    if (wa[i][0] === wb[j][0]) { sameA.add(wa[i][1]); sameB.add(wb[j][1]); i++; j++; }
    else if (len[(i + 1) * w + j] >= len[i * w + j + 1]) i++;
    else j++;
  }
  const mark = (ts, same) => ts.map((t, i) => ({ text: t, same: isSpace(t) || same.has(i) }));
  return { a: mark(ta, sameA), b: mark(tb, sameB) };
}
