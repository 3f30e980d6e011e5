"""What a reader sees, measured: HTML reports laid out by headless Chromium, PDF words sized by poppler.

``layout_problems(html_path)`` copies the page with a small script appended, lets Chromium lay it out
(``--dump-dom``: the DOM after the page's scripts ran) and returns what the script found:

- ``overflow``: elements whose content is wider than their box (``scrollWidth > clientWidth``: text cut or
  running into the next cell), and a page wider than the window;
- ``broken_words``: words (runs of non-space characters) laid out over more than one line — "n_lesio ns",
  "SIM-MMPET-" / "0048", "2.7–" / "8.3" (outside tables a compound may break after its hyphen, as in print);
- ``overlaps``: blocks (images, tables, paragraphs, headings, captions, lists) whose boxes intersect;
- ``broken_images``: images Chromium could not decode.

No library renders HTML like a browser does, so this drives the browser itself; written here because no
test tool in the environment does it (no Selenium/Playwright).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                None)

_SCRIPT = r"""
<script>
window.addEventListener('load', function () {
  const out = {overflow: [], broken_words: [], overlaps: [], broken_images: [], n_words: 0};
  const snip = el => (el.textContent || el.getAttribute('alt') || '').trim().replace(/\s+/g, ' ').slice(0, 80);
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1)
    out.overflow.push({tag: 'page', text: 'page ' + root.scrollWidth + ' px wide in a ' + root.clientWidth +
                       ' px window'});
  for (const el of document.body.querySelectorAll('*')) {
    if (el.tagName === 'SCRIPT' || el.id === 'layout-check') continue;
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1)
      out.overflow.push({tag: el.tagName.toLowerCase(), text: snip(el), scroll: el.scrollWidth,
                         client: el.clientWidth});
  }
  // every word of every text node: more than one line box = broken across lines
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.parentElement || node.parentElement.closest('script, #layout-check')) continue;
    const re = /\S+/g; let m;
    while ((m = re.exec(node.data)) !== null) {
      out.n_words++;
      range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
      const tops = new Set();
      for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
      // running text may break after the hyphen of a compound ("log-" / "rank"); a table cell may not
      const prose = !node.parentElement.closest('table') && /[-\u2013\u2014\/]/.test(m[0]);
      if (tops.size > 1 && !prose) out.broken_words.push({word: m[0], in: snip(node.parentElement)});
    }
  }
  const blocks = [...document.body.querySelectorAll('img, table, p, h1, h2, h3, figcaption, div.caption, ul, pre, svg')]
    .filter(el => !el.closest('#layout-check') && !(el.tagName !== 'svg' && el.closest('svg')));
  const boxes = blocks.map(el => el.getBoundingClientRect());
  for (let i = 0; i < blocks.length; i++) {
    for (let j = i + 1; j < blocks.length; j++) {
      if (blocks[i].contains(blocks[j]) || blocks[j].contains(blocks[i])) continue;
      const a = boxes[i], b = boxes[j];
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1)
        out.overlaps.push({a: blocks[i].tagName.toLowerCase() + ': ' + snip(blocks[i]),
                           b: blocks[j].tagName.toLowerCase() + ': ' + snip(blocks[j])});
    }
  }
  for (const img of document.images)
    if (!img.complete || img.naturalWidth === 0) out.broken_images.push(snip(img));
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def layout_problems(html_path: str | Path, width: int = 1280, height: int = 900) -> dict:
    """Lay ``html_path`` out in headless Chromium at ``width`` × ``height`` px and return the problems found
    (see the module docstring); ``n_words`` is how many words were measured."""
    html_path = Path(html_path)
    text = html_path.read_text(encoding="utf-8")
    text = text.replace("</body>", _SCRIPT + "</body>") if "</body>" in text else text + _SCRIPT
    with tempfile.TemporaryDirectory() as tmp:
        # beside the original, so relative links resolve the same way
        probe = html_path.parent / f".layout-probe-{Path(tmp).name}.html"
        probe.write_text(text, encoding="utf-8")
        try:
            dom = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--user-data-dir={tmp}", f"--window-size={width},{height}", "--virtual-time-budget=10000",
                 "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120).stdout
        finally:
            probe.unlink(missing_ok=True)
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError(f"Chromium returned no layout check for {html_path} ({len(dom)} characters of DOM)")
    import html as _html

    return json.loads(_html.unescape(found.group(1)))


def pdf_word_sizes(pdf: str | Path) -> list[tuple[int, str, float, float, float]]:
    """(page, word, font size in pt, left x, right x in pt) of every word ``pdftotext -bbox`` finds in ``pdf``.

    The size comes from the word's box height: poppler makes it the font's ascent + descent, 1.1655 em for
    DejaVu Sans (carpet's font); a vertical word (a y-axis label) has a box as wide as the font is tall.
    """
    xml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    words = []
    for page, body in enumerate(xml.split("<page ")[1:], 1):
        for m in re.finditer(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>',
                             body):
            x0, y0, x1, y1 = map(float, m.groups()[:4])
            w, h = x1 - x0, y1 - y0
            words.append((page, m.group(5), (w if h > 2 * w and len(m.group(5)) > 1 else h) / 1.1655, x0, x1))
    return words
