// Artifacts on a run's page: markdown rendered as markdown, tables as tables, links, progress
// bars and images. Everything from a run is text until this code makes it an element: no HTML
// of the run's reaches the page.
"use strict";

function markdownInline(text) {
  // **bold**, *italic*, `code` and [text](https://link), as nodes.
  const out = [];
  const pattern = /(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`|\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("**")) out.push(el("strong", {}, token.slice(2, -2)));
    else if (token.startsWith("`")) out.push(el("code", {}, token.slice(1, -1)));
    else if (token.startsWith("[")) {
      const [, label, href] = token.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
      out.push(/^https?:\/\//.test(href) ? el("a", { href, rel: "noopener" }, label) : label);
    } else out.push(el("em", {}, token.slice(1, -1)));
    last = match.index + token.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function markdownTable(lines) {
  const cells = (line) => line.replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
  const [head, , ...rows] = lines;
  return el("table", { class: "md-table" },
    el("thead", {}, el("tr", {}, cells(head).map((c) => el("th", {}, markdownInline(c))))),
    el("tbody", {}, rows.map((row) => el("tr", {}, cells(row).map((c) => el("td", {}, markdownInline(c)))))));
}

function renderMarkdown(source) {
  // Headings, paragraphs, lists, fenced code and pipe tables: what reports are made of.
  const root = el("div", { class: "markdown" });
  const lines = String(source).split("\n");
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(el("pre", { class: "mono" }, code.join("\n")));
      i++;
    } else if (/^#{1,6} /.test(line)) {
      const level = line.match(/^#+/)[0].length;
      root.append(el(`h${Math.min(level + 2, 6)}`, {}, markdownInline(line.slice(level + 1))));
      i++;
    } else if (/^\s*[-*] /.test(line)) {
      const items = [];
      for (; i < lines.length && /^\s*[-*] /.test(lines[i]); i++) {
        items.push(el("li", {}, markdownInline(lines[i].replace(/^\s*[-*] /, ""))));
      }
      root.append(el("ul", {}, items));
    } else if (line.trim().startsWith("|") && /^\s*\|?[\s:-]+\|/.test(lines[i + 1] || "")) {
      const table = [];
      for (; i < lines.length && lines[i].trim().startsWith("|"); i++) table.push(lines[i].trim());
      root.append(markdownTable(table));
    } else if (line.trim()) {
      const paragraph = [];
      for (; i < lines.length && lines[i].trim() && !/^(#|```|\s*[-*] |\s*\|)/.test(lines[i]); i++) {
        paragraph.push(lines[i]);
      }
      if (!paragraph.length) { paragraph.push(line); i++; }
      root.append(el("p", {}, markdownInline(paragraph.join(" "))));
    } else i++;
  }
  return root;
}

function renderTable(data) {
  // A dict of columns, a list of row objects, or a list of row lists.
  let columns = [];
  let rows = [];
  if (Array.isArray(data)) {
    if (data.length && !Array.isArray(data[0]) && typeof data[0] === "object") {
      columns = [...new Set(data.flatMap((row) => Object.keys(row)))];
      rows = data.map((row) => columns.map((c) => row[c]));
    } else rows = data.map((row) => (Array.isArray(row) ? row : [row]));
  } else if (data && typeof data === "object") {
    columns = Object.keys(data);
    const length = Math.max(0, ...columns.map((c) => (data[c] || []).length));
    rows = Array.from({ length }, (_, i) => columns.map((c) => (data[c] || [])[i]));
  }
  const text = (value) => (value === null || value === undefined ? "" :
    typeof value === "object" ? JSON.stringify(value) : String(value));
  return el("table", { class: "artifact-table" },
    columns.length ? el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))) : null,
    el("tbody", {}, rows.map((row) => el("tr", {}, row.map((value) => el("td", {}, text(value)))))));
}

function renderArtifact(artifact) {
  const body = {
    markdown: () => renderMarkdown(artifact.data),
    table: () => renderTable(artifact.data),
    link: () => /^https?:\/\//.test(artifact.data.link)
      ? el("a", { href: artifact.data.link, rel: "noopener" }, artifact.data.link_text || artifact.data.link)
      : el("span", { class: "mono" }, artifact.data.link),
    progress: () => el("div", {}, el("progress", { max: "100", value: String(artifact.data) }),
      ` ${Number(artifact.data).toFixed(0)} %`),
    image: () => /^https?:\/\//.test(artifact.data)
      ? el("img", { src: artifact.data, alt: artifact.description || artifact.key || "image" })
      : el("span", { class: "mono" }, artifact.data),
  }[artifact.type];
  return el("div", { class: "panel artifact", "data-artifact-type": artifact.type },
    el("h3", {}, artifact.key || artifact.type, " ",
      el("span", { class: "muted" }, artifact.description || "")),
    body ? body() : el("pre", { class: "mono" }, JSON.stringify(artifact.data, null, 2)));
}

function artifactsSection(artifacts) {
  if (!artifacts || !artifacts.length) return null;
  return el("div", { id: "artifacts" }, el("h2", {}, `Artifacts (${artifacts.length})`),
    artifacts.map(renderArtifact));
}
