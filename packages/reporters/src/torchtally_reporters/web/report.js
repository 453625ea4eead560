/* torchtally's HTML report: reads the JSON in #torchtally-data and draws the page.
 *
 * The data is one of three kinds: "analysis" (the json format's document), "diff" (two analyses
 * compared) or "sweep" (one analysis per input size). The module tree is a grid that keeps in the
 * DOM only the rows in view, so a 70B model's thousands of modules scroll like ten.
 */
(function () {
  "use strict";

  var PAYLOAD = JSON.parse(document.getElementById("torchtally-data").textContent);
  var UNITS = [[1e14, 1e15, "P"], [1e11, 1e12, "T"], [1e8, 1e9, "G"], [1e5, 1e6, "M"], [1e2, 1e3, "K"]];
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac"];
  var NAMES = { params: "parameters" };

  // --- small helpers ---------------------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    var key;
    for (key in attrs || {}) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "cls") node.className = attrs[key];
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), attrs[key]);
      else if (attrs[key] !== null && attrs[key] !== undefined) node.setAttribute(key, attrs[key]);
    }
    (children || []).forEach(function (child) {
      if (child !== null && child !== undefined) {
        node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
      }
    });
    return node;
  }

  function trim(text) {
    return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, "");
  }

  /** A count as torchtally's table shows it: 100, 0.44K, 4.112G (a unit from a tenth of it). */
  function human(value) {
    if (value === null || value === undefined) return "";
    var size = Math.abs(value);
    for (var i = 0; i < UNITS.length; i++) {
      if (size > UNITS[i][0]) return trim((value / UNITS[i][1]).toFixed(3)) + UNITS[i][2];
    }
    return Number.isInteger(value) ? String(value) : trim(value.toFixed(3));
  }

  function signed(value) {
    return (value > 0 ? "+" : "") + human(value);
  }

  function metricName(metric) {
    return NAMES[metric] || metric;
  }

  function parentName(name) {
    var dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(0, dot);
  }

  function shapeText(value) {
    if (Array.isArray(value)) return "(" + value.join(", ") + (value.length === 1 ? ",)" : ")");
    return String(value);
  }

  /** The inputs of `to_dict()` (positional arguments, keyword arguments) as one line. */
  function inputsText(inputs) {
    function one(value) {
      if (value && typeof value === "object" && Array.isArray(value.shape)) {
        return shapeText(value.shape) + " " + value.dtype;
      }
      if (Array.isArray(value)) return "[" + value.map(one).join(", ") + "]";
      if (value && typeof value === "object") {
        return Object.keys(value).map(function (k) { return k + " " + one(value[k]); }).join(", ");
      }
      return JSON.stringify(value);
    }
    if (!Array.isArray(inputs) || inputs.length !== 2) return one(inputs);
    var parts = inputs[0].map(one);
    var keywords = Object.keys(inputs[1] || {});
    if (keywords.length) parts.push(one(inputs[1]));
    return parts.join(", ");
  }

  // --- one analysis: its modules as a tree of nodes with values per column -----------------------

  /** Count columns of a json document: parameters, then each metric (per phase first when the
   * backward pass counted something for it). */
  function analysisColumns(doc) {
    var columns = [];
    if (doc.params) columns.push({ key: "params", metric: "params", label: "#parameters" });
    Object.keys(doc.metrics).forEach(function (metric) {
      var phases = doc.phases ? Object.keys(doc.phases) : [];
      var split = phases.length > 1 && phases.slice(1).some(function (phase) {
        return doc.phases[phase][metric] && doc.phases[phase][metric].total;
      });
      if (split) {
        phases.forEach(function (phase) {
          columns.push({ key: metric + ":" + phase, metric: metric, phase: phase,
            label: "#" + metric + " (" + phase + ")" });
        });
      }
      columns.push({ key: metric, metric: metric, label: "#" + metric + (split ? " (total)" : "") });
    });
    return columns;
  }

  function byModule(doc, column) {
    if (column.metric === "params") return doc.params.by_module;
    var section = column.phase ? doc.phases[column.phase][column.metric] : doc.metrics[column.metric];
    return section.by_module;
  }

  /** Nodes for every module (and parameter, as leaves) of a json document, root first. */
  function buildTree(doc, columns) {
    var nodes = {};
    var order = [];
    var uncalled = {};
    (doc.uncalled_modules || []).forEach(function (name) { uncalled[name] = true; });
    var tables = columns.map(function (column) { return byModule(doc, column); });
    Object.keys(doc.modules).forEach(function (name) {
      var info = doc.modules[name];
      var values = {};
      columns.forEach(function (column, i) {
        var value = tables[i][name];
        values[column.key] = value === undefined ? 0 : value;
      });
      nodes[name] = { name: name, label: name ? name.slice(name.lastIndexOf(".") + 1) : "model",
        type: info.type, aliases: info.aliases || [], shared: {},
        values: values, called: !uncalled[name], children: [], params: [], depth: 0,
        parent: null, kind: "module" };
      order.push(name);
    });
    order.forEach(function (name) {
      if (!name) return;
      var up = parentName(name);
      while (up && !nodes[up]) up = parentName(up);
      var parent = nodes[up];
      nodes[name].parent = parent;
      parent.children.push(nodes[name]);
    });
    order.forEach(function (name) {
      var node = nodes[name];
      node.depth = node.parent ? node.parent.depth + 1 : 0;
    });
    var shapes = (doc.params && doc.params.shapes) || {};
    Object.keys(shapes).forEach(function (name) {
      var owner = nodes[parentName(name)] || nodes[""];
      var size = shapes[name].reduce(function (a, b) { return a * b; }, 1);
      var values = {};
      values.params = size;
      owner.params.push({ name: name, label: name.slice(name.lastIndexOf(".") + 1),
        type: shapeText(shapes[name]), values: values, called: true, children: [], params: [],
        depth: owner.depth + 1, parent: owner, kind: "param" });
    });
    var shared = (doc.params && doc.params.shared) || {};
    Object.keys(shared).forEach(function (alias) { // tied weights, counted under another name
      var owner = nodes[parentName(alias)];
      if (!owner) return;
      owner.shared[alias] = shared[alias];
      owner.params.push({ name: alias, label: alias.slice(alias.lastIndexOf(".") + 1),
        type: "shared: " + shared[alias], values: { params: 0 }, called: true, children: [],
        params: [], depth: owner.depth + 1, parent: owner, kind: "param" });
    });
    return { root: nodes[""], nodes: nodes };
  }

  // --- the tree grid ----------------------------------------------------------------------------

  /** A collapsible, sortable tree table that renders only the rows in view.
   *
   * `columns`: {key, label, title?, cls?, text(node) -> string, raw(node) -> number|null,
   * bar(node) -> 0..1 or null}. Clicking a header sorts every node's children by that column
   * (largest first, then smallest first, then back to module order).
   */
  function TreeGrid(host, root, columns, options) {
    var self = this;
    var rowHeight = 24;
    var template = "minmax(220px, 2.4fr) minmax(90px, 1fr) " +
      columns.map(function (column) { return column.width || "minmax(90px, 1fr)"; }).join(" ");
    this.root = root;
    this.sort = null;
    this.showParams = false;
    this.expanded = {};
    this.selected = null;
    this.filter = "";
    this.rows = [];
    (function expand(node) {
      if (node.depth < (options.depth === undefined ? 2 : options.depth)) {
        self.expanded[node.name] = true;
        node.children.forEach(expand);
      }
    })(root);

    var head = el("div", { cls: "row head", role: "row", style: "grid-template-columns:" + template },
      [el("div", { role: "columnheader", text: "module" }), el("div", { role: "columnheader", text: "type" })]);
    columns.forEach(function (column) {
      head.appendChild(el("div", { cls: "num", role: "columnheader", "data-col": column.key,
        title: column.title || "sort by " + column.label, text: column.label,
        onclick: function () { self.sortBy(column.key); } }));
    });
    this.head = head;
    var body = el("div", { cls: "body", role: "rowgroup" });
    var spacer = el("div", { cls: "spacer" });
    var rows = el("div", { cls: "rows" });
    spacer.appendChild(rows);
    body.appendChild(spacer);
    host.appendChild(el("div", { cls: "grid", role: "treegrid" }, [head, body]));
    body.addEventListener("scroll", function () { self.draw(); });
    window.addEventListener("resize", function () { self.draw(); });

    this.refresh = function () {
      var list = [];
      var needle = self.filter.toLowerCase();
      var keep = null;
      if (needle) { // matches and their ancestors, everything expanded
        keep = {};
        (function mark(node) {
          var hit = node.name.toLowerCase().indexOf(needle) >= 0 ||
            (node.type || "").toLowerCase().indexOf(needle) >= 0;
          node.children.forEach(function (child) { if (mark(child)) hit = true; });
          if (hit) keep[node.name] = true;
          return hit;
        })(root);
      }
      (function walk(node) {
        if (keep && !keep[node.name]) return;
        list.push(node);
        if (!keep && !self.expanded[node.name]) return;
        if (self.showParams) node.params.forEach(function (param) { list.push(param); });
        self.ordered(node.children).forEach(walk);
      })(root);
      self.rows = list;
      spacer.style.height = list.length * rowHeight + "px";
      self.draw(true);
    };

    this.ordered = function (children) {
      if (!self.sort) return children;
      var key = self.sort.key;
      var sign = self.sort.descending ? -1 : 1;
      var column = columns.filter(function (c) { return c.key === key; })[0];
      return children.slice().sort(function (a, b) {
        var x = column.raw(a);
        var y = column.raw(b);
        x = x === null || x === undefined ? -Infinity : x;
        y = y === null || y === undefined ? -Infinity : y;
        return x === y ? 0 : (x < y ? -sign : sign);
      });
    };

    var drawn = [-1, -1];
    this.draw = function (force) {
      var first = Math.max(0, Math.floor(body.scrollTop / rowHeight) - 10);
      var last = Math.min(self.rows.length, first + Math.ceil(body.clientHeight / rowHeight) + 20);
      if (!force && first === drawn[0] && last === drawn[1]) return;
      drawn = [first, last];
      rows.style.transform = "translateY(" + first * rowHeight + "px)";
      var fragment = document.createDocumentFragment();
      for (var i = first; i < last; i++) fragment.appendChild(self.rowElement(self.rows[i]));
      rows.replaceChildren(fragment);
    };

    this.rowElement = function (node) {
      var row = el("div", { cls: "row" + (node === self.selected ? " selected" : ""), role: "row",
        "data-name": node.name, "data-kind": node.kind, "aria-level": node.depth + 1,
        style: "grid-template-columns:" + template });
      var name = el("div", { cls: "name", style: "padding-left:" + (6 + node.depth * 14) + "px",
        title: node.name || "the whole model" });
      if (node.kind === "module" && (node.children.length || (self.showParams && node.params.length))) {
        var open = !!self.expanded[node.name] || !!self.filter;
        name.appendChild(el("button", { cls: "toggle", "aria-expanded": String(open),
          "aria-label": (open ? "collapse " : "expand ") + (node.name || "model"),
          text: open ? "\u25BE" : "\u25B8",
          onclick: function (event) { event.stopPropagation(); self.toggle(node); } }));
      } else {
        name.appendChild(el("span", { cls: "toggle" }));
      }
      name.appendChild(el("span", { cls: node.kind === "param" ? "param" : "", text: node.label }));
      if (node.aliases && node.aliases.length) {
        name.appendChild(el("span", { cls: "alias", text: " (also " + node.aliases.join(", ") + ")" }));
      }
      if (options.decorate) options.decorate(node, name);
      name.addEventListener("click", function () { self.select(node); });
      row.appendChild(name);
      row.appendChild(el("div", { cls: "type", text: node.type || "" }));
      columns.forEach(function (column) {
        var cell = el("div", { cls: "num " + (column.cls ? column.cls(node) : ""),
          "data-col": column.key });
        var raw = column.raw(node);
        var text = column.text(node);
        var bar = column.bar ? column.bar(node) : null;
        if (bar) cell.appendChild(el("div", { cls: "bar", style: "width:" + Math.min(100, bar * 100) + "%" }));
        var span = el("span", { text: text });
        if (raw !== null && raw !== undefined) {
          span.setAttribute("data-raw", String(raw));
          span.title = raw.toLocaleString("en-US");
        }
        if (column.title && column.note && column.note(node)) span.title = column.note(node);
        cell.appendChild(span);
        row.appendChild(cell);
      });
      return row;
    };

    this.toggle = function (node) {
      self.expanded[node.name] = !self.expanded[node.name];
      self.refresh();
    };

    this.expandAll = function (open) {
      self.expanded = {};
      if (open) {
        (function walk(node) {
          self.expanded[node.name] = true;
          node.children.forEach(walk);
        })(root);
      } else {
        self.expanded[root.name] = true;
      }
      self.refresh();
    };

    this.sortBy = function (key) {
      if (!self.sort || self.sort.key !== key) self.sort = { key: key, descending: true };
      else if (self.sort.descending) self.sort = { key: key, descending: false };
      else self.sort = null;
      Array.prototype.forEach.call(head.querySelectorAll("[data-col]"), function (cell) {
        var on = self.sort && cell.getAttribute("data-col") === self.sort.key;
        if (on) cell.setAttribute("aria-sort", self.sort.descending ? "descending" : "ascending");
        else cell.removeAttribute("aria-sort");
      });
      self.refresh();
    };

    this.select = function (node) {
      self.selected = node;
      self.draw(true);
      if (options.onSelect) options.onSelect(node);
    };
    this.refresh();
  }

  function treeControls(grid, what, noParams) {
    var search = el("input", { type: "search", placeholder: "find a " + what + " or type",
      "aria-label": "find a module",
      oninput: function () { grid.filter = search.value; grid.refresh(); } });
    var params = el("input", { type: "checkbox", id: "show-params",
      onchange: function () { grid.showParams = params.checked; grid.refresh(); } });
    return el("div", { cls: "controls" }, [
      el("button", { cls: "small", text: "expand all", onclick: function () { grid.expandAll(true); } }),
      el("button", { cls: "small", text: "collapse all", onclick: function () { grid.expandAll(false); } }),
      search,
      noParams ? null : el("label", {}, [params, " parameters"]),
      el("span", { cls: "note", text: "Click a heading to sort, a name for details." }),
    ]);
  }

  // --- the treemap ------------------------------------------------------------------------------

  /** A zoomable treemap of `root`'s nodes sized by `value(node)` (a module's own share is the
   * part of its box its children leave empty). */
  function Treemap(host, root, metrics, valueOf) {
    var select = el("select", { "aria-label": "metric of the treemap" });
    metrics.forEach(function (metric) {
      select.appendChild(el("option", { value: metric, text: metricName(metric) }));
    });
    var crumbs = el("span", { cls: "crumbs" });
    var box = el("div", { id: "map" });
    host.appendChild(el("div", { cls: "controls" }, [el("label", {}, ["size by ", select]), crumbs,
      el("span", { cls: "note", text: "Click a box to zoom in." })]));
    host.appendChild(box);
    var focus = root;
    var svgNS = "http://www.w3.org/2000/svg";
    var MAX_DEPTH = 4; // levels drawn below the box in focus
    var colors = {};

    /** One colour per module type, so that every attention block looks alike. */
    function colorOf(type) {
      if (!(type in colors)) colors[type] = PALETTE[Object.keys(colors).length % PALETTE.length];
      return colors[type];
    }

    function ownValue(node, metric) {
      var total = valueOf(node, metric) || 0;
      var inChildren = node.children.reduce(function (sum, child) {
        return sum + (valueOf(child, metric) || 0);
      }, 0);
      return Math.max(0, total - inChildren);
    }

    function draw() {
      var metric = select.value;
      var width = box.clientWidth || 800;
      var height = box.clientHeight || 500;
      var hierarchy = d3.hierarchy(focus, function (node) { return node.children; })
        .sum(function (node) { return ownValue(node, metric); })
        .sort(function (a, b) { return b.value - a.value; });
      d3.treemap().size([width, height]).paddingTop(function (n) { return n.depth < 3 ? 15 : 0; })
        .paddingInner(1).round(true)(hierarchy);
      var total = hierarchy.value || 1;
      var svg = document.createElementNS(svgNS, "svg");
      svg.setAttribute("width", width);
      svg.setAttribute("height", height);
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", "treemap of " + metricName(metric));
      var shown = 0;
      hierarchy.each(function (n) {
        var w = n.x1 - n.x0;
        var h = n.y1 - n.y0;
        if (n.depth > MAX_DEPTH || w < 3 || h < 3 || !n.value || shown > 3000) return;
        shown++;
        var hue = colorOf(n.data.type || "");
        var group = document.createElementNS(svgNS, "g");
        var rect = document.createElementNS(svgNS, "rect");
        rect.setAttribute("x", n.x0);
        rect.setAttribute("y", n.y0);
        rect.setAttribute("width", w);
        rect.setAttribute("height", h);
        rect.setAttribute("fill", hue);
        rect.setAttribute("fill-opacity", String(Math.max(0.25, 0.9 - n.depth * 0.17)));
        rect.setAttribute("data-name", n.data.name);
        var title = document.createElementNS(svgNS, "title");
        title.textContent = (n.data.name || "model") + " (" + n.data.type + "): " +
          human(valueOf(n.data, metric)) + " " + metricName(metric) + ", " +
          (100 * n.value / total).toFixed(1) + "%";
        rect.appendChild(title);
        rect.addEventListener("click", function () {
          var target = n.children ? n.data : (n.parent ? n.parent.data : n.data);
          if (target !== focus) { focus = target; draw(); }
        });
        group.appendChild(rect);
        if (w > 40 && h > 13 && (!n.children || n.depth < 3 || n.depth === MAX_DEPTH)) {
          var text = document.createElementNS(svgNS, "text");
          text.setAttribute("x", n.x0 + 3);
          text.setAttribute("y", n.y0 + 11);
          var label = (n.data.label || "model") + " " + human(n.value === 0 ? 0 : valueOf(n.data, metric));
          text.textContent = label.length * 6 > w ? label.slice(0, Math.max(1, Math.floor(w / 6) - 1)) + "\u2026" : label;
          group.appendChild(text);
        }
        svg.appendChild(group);
      });
      box.replaceChildren(svg);
      var path = [];
      for (var node = focus; node; node = node.parent) path.unshift(node);
      crumbs.replaceChildren();
      path.forEach(function (node, i) {
        if (i) crumbs.appendChild(document.createTextNode(" \u203A "));
        crumbs.appendChild(el("button", { text: node.label, onclick: function () { focus = node; draw(); } }));
      });
    }
    if (metrics.indexOf("flops") >= 0) select.value = "flops";
    select.addEventListener("change", function () { draw(); });
    this.draw = draw;
  }

  // --- pieces of the analysis page --------------------------------------------------------------

  function cards(doc, columns) {
    return el("div", { cls: "cards" }, columns.filter(function (c) { return !c.phase; }).map(function (c) {
      var value = c.metric === "params" ? doc.params.total : doc.metrics[c.metric].total;
      return el("div", { cls: "card", "data-total": c.metric },
        [el("b", { text: human(value), title: value.toLocaleString("en-US"), "data-raw": String(value) }),
          el("span", { text: metricName(c.metric) })]);
    }));
  }

  function facts(doc) {
    var conventions = doc.conventions || {};
    var rows = [
      ["inputs", inputsText(doc.inputs)],
      ["mode", doc.mode],
      ["flop", conventions.flop],
      ["attribution", conventions.ancestor_mode],
      ["element-wise ops", conventions.elementwise ? "counted" : "not counted (fvcore's totals)"],
    ];
    if (doc.phases) rows.push(["phases", Object.keys(doc.phases).join(", ")]);
    Object.keys(conventions.options || {}).forEach(function (key) {
      rows.push(["option " + key, JSON.stringify(conventions.options[key])]);
    });
    rows.push(["torchtally", doc.torchtally_version + " (schema " + doc.schema_version + ")"]);
    var list = el("dl", { cls: "facts" });
    rows.forEach(function (row) {
      list.appendChild(el("dt", { text: row[0] }));
      list.appendChild(el("dd", { text: row[1] === undefined ? "" : String(row[1]) }));
    });
    return list;
  }

  function barTable(headers, rows, total) {
    var table = el("table", { cls: "plain" });
    table.appendChild(el("tr", {}, headers.map(function (h) { return el("th", { text: h }); })));
    rows.forEach(function (row) {
      var cells = [el("td", { text: row[0] })];
      row.slice(1).forEach(function (value, i) {
        var td = el("td", { cls: typeof value === "number" || /^[0-9.]+$/.test(value) ? "num" : "" });
        if (i === 0 && total && typeof value === "number") {
          td.appendChild(el("div", { cls: "bar", style: "width:" + Math.min(100, 100 * value / total) + "%" }));
        }
        var span = el("span", { text: typeof value === "number" ? human(value) : String(value) });
        if (typeof value === "number") {
          span.setAttribute("data-raw", String(value));
          span.title = value.toLocaleString("en-US");
        }
        td.appendChild(span);
        cells.push(td);
      });
      table.appendChild(el("tr", {}, cells));
    });
    return table;
  }

  function operatorsSection(doc) {
    var host = el("div", {});
    Object.keys(doc.metrics).forEach(function (metric) {
      var section = doc.metrics[metric];
      var ops = Object.keys(section.by_operator).sort(function (a, b) {
        return section.by_operator[b] - section.by_operator[a];
      });
      host.appendChild(el("h2", { text: metricName(metric) + " per operator" }));
      var phases = doc.phases ? Object.keys(doc.phases) : [];
      var headers = ["operator", "#" + metric, "%"].concat(phases.map(function (p) { return p; }));
      var rows = ops.map(function (op) {
        var value = section.by_operator[op];
        var row = [op, value, section.total ? (100 * value / section.total).toFixed(1) : ""];
        phases.forEach(function (phase) {
          row.push(doc.phases[phase][metric].by_operator[op] || 0);
        });
        return row;
      });
      var table = barTable(headers, rows, section.total);
      table.setAttribute("data-metric", metric);
      host.appendChild(ops.length ? table : el("p", { cls: "note", text: "nothing counted" }));
    });
    return host;
  }

  function issuesSection(doc) {
    var host = el("div", {});
    var any = false;
    Object.keys(doc.metrics).forEach(function (metric) {
      var missed = doc.metrics[metric].unsupported_ops || {};
      var ops = Object.keys(missed);
      if (!ops.length) return;
      any = true;
      var where = doc.metrics[metric].unsupported_ops_by_module || {};
      host.appendChild(el("h2", { text: "Not counted in " + metricName(metric) + " (no handler)" }));
      host.appendChild(barTable(["op", "times run", "deepest modules it ran in"], ops.map(function (op) {
        var modules = Object.keys(where).filter(function (name) {
          return name && where[name][op] && !Object.keys(where).some(function (other) {
            return other.indexOf(name + ".") === 0 && where[other][op];
          });
        });
        return [op, missed[op], modules.slice(0, 6).join(", ") + (modules.length > 6 ? ", \u2026" : "")];
      })));
    });
    var uncalled = doc.uncalled_modules || [];
    if (uncalled.length) {
      any = true;
      host.appendChild(el("h2", { text: "Modules whose __call__ never ran (" + uncalled.length + ")" }));
      host.appendChild(el("p", { cls: "note", text: "Unused, or run through .forward() or another " +
        "method: whatever they computed is counted in their parent." }));
      host.appendChild(el("ul", { id: "uncalled" }, uncalled.map(function (name) {
        return el("li", { text: name + " (" + doc.modules[name].type + ")" });
      })));
    }
    var failures = doc.handler_failures || [];
    if (failures.length) {
      any = true;
      host.appendChild(el("h2", { text: "Handler failures" }));
      host.appendChild(el("ul", {}, failures.map(function (f) { return el("li", { text: f }); })));
    }
    if (!any) host.appendChild(el("p", { text: "Every op that ran was counted; every module was called." }));
    return host;
  }

  function moduleDetails(doc, host) {
    return function (node) {
      var name = node.kind === "param" ? node.parent.name : node.name;
      var parts = [el("h3", { text: (name || "model") + " \u2014 " + doc.modules[name].type })];
      if (node.kind === "param") parts.push(el("p", { text: "parameter " + node.name + " " + node.type }));
      if (!node.called) parts.push(el("p", { cls: "note", text: "its __call__ never ran: its work is counted in its parent" }));
      Object.keys(doc.metrics).forEach(function (metric) {
        var ops = doc.metrics[metric].by_module_and_operator[name] || {};
        var total = doc.metrics[metric].by_module[name] || 0;
        var keys = Object.keys(ops).sort(function (a, b) { return ops[b] - ops[a]; });
        if (!keys.length) return;
        parts.push(el("h2", { text: metricName(metric) + ": " + human(total) }));
        parts.push(barTable(["operator", "#" + metric], keys.map(function (op) { return [op, ops[op]]; }), total));
        var missed = (doc.metrics[metric].unsupported_ops_by_module || {})[name];
        if (missed) {
          parts.push(el("p", { cls: "note", text: "not counted: " + Object.keys(missed).map(function (op) {
            return op + " \u00D7" + missed[op];
          }).join(", ") }));
        }
      });
      var shapes = (doc.params && doc.params.shapes) || {};
      var own = Object.keys(shapes).filter(function (p) { return parentName(p) === name; });
      if (own.length) {
        parts.push(el("h2", { text: "parameters" }));
        parts.push(el("ul", {}, own.map(function (p) { return el("li", { text: p + " " + shapeText(shapes[p]) }); })));
      }
      host.replaceChildren.apply(host, parts);
    };
  }

  function tabs(sections) {
    var nav = el("nav", { cls: "tabs", role: "tablist" });
    var main = el("main", {});
    sections.forEach(function (section, i) {
      var panel = el("section", { id: "tab-" + section.id, role: "tabpanel" });
      var button = el("button", { role: "tab", "data-tab": section.id, text: section.label,
        "aria-selected": String(i === 0),
        onclick: function () {
          Array.prototype.forEach.call(nav.children, function (b) { b.setAttribute("aria-selected", String(b === button)); });
          Array.prototype.forEach.call(main.children, function (p) { p.hidden = p !== panel; });
          if (!panel.filled) { panel.filled = true; section.fill(panel); }
          if (section.shown) section.shown(panel);
        } });
      panel.hidden = i !== 0;
      nav.appendChild(button);
      main.appendChild(panel);
    });
    document.body.appendChild(nav);
    document.body.appendChild(main);
    nav.children[0].click();
  }

  function numberColumns(columns, totals) {
    return columns.map(function (column) {
      return {
        key: column.key, label: column.label,
        raw: function (node) {
          if (node.kind === "param") return column.metric === "params" ? node.values.params : null;
          if (!node.called && column.metric !== "params") return null;
          return node.values[column.key];
        },
        text: function (node) {
          if (node.kind === "param") {
            if (column.metric !== "params") return "";
            return node.type.indexOf("shared: ") === 0 ? "shared" : node.type;
          }
          if (!node.called && column.metric !== "params") return "\u2014";
          if (column.metric === "params" && node.shared && Object.keys(node.shared).length) {
            return human(node.values.params) + " (shared)";
          }
          return human(node.values[column.key]);
        },
        cls: function (node) { return !node.called && column.metric !== "params" ? "uncalled" : ""; },
        bar: function (node) {
          if (node.kind === "param" || (!node.called && column.metric !== "params")) return null;
          return totals[column.key] ? node.values[column.key] / totals[column.key] : null;
        },
        title: "sort", note: function (node) {
          if (!node.called && column.metric !== "params") {
            return "__call__ never ran: counted in its parent";
          }
          if (column.metric === "params" && node.shared && Object.keys(node.shared).length) {
            return Object.keys(node.shared).map(function (p) {
              return p + " is " + node.shared[p] + ", counted there";
            }).join("; ");
          }
          return null;
        },
      };
    });
  }

  function analysisPage(doc, title) {
    var columns = analysisColumns(doc);
    var tree = buildTree(doc, columns);
    var totals = {};
    columns.forEach(function (c) { totals[c.key] = tree.root.values[c.key]; });
    document.body.appendChild(el("header", {}, [
      el("h1", {}, [title, el("small", { text: "torchtally " + doc.torchtally_version })]),
      el("div", { cls: "top" }, [cards(doc, columns), facts(doc)])]));
    var mapMetrics = columns.filter(function (c) { return !c.phase && totals[c.key]; })
      .map(function (c) { return c.key; });
    var map = null;
    tabs([
      { id: "modules", label: "Modules", fill: function (panel) {
        var details = el("div", { cls: "details", id: "details" }, [el("p", { cls: "note",
          text: "Select a module to see its operators." })]);
        var left = el("div", { cls: "grow" });
        panel.appendChild(el("div", { cls: "split" }, [left, details]));
        var grid = new TreeGrid(left, tree.root, numberColumns(columns, totals),
          { onSelect: moduleDetails(doc, details) });
        left.insertBefore(treeControls(grid, "module"), left.firstChild);
        window.torchtallyGrid = grid;
      } },
      { id: "map", label: "Treemap", fill: function (panel) {
        map = new Treemap(panel, tree.root, mapMetrics, function (node, metric) {
          return node.called || metric === "params" ? node.values[metric] : 0;
        });
      }, shown: function () { if (map) map.draw(); } },
      { id: "operators", label: "Operators", fill: function (panel) { panel.appendChild(operatorsSection(doc)); } },
      { id: "issues", label: "Not counted", fill: function (panel) { panel.appendChild(issuesSection(doc)); } },
    ]);
  }

  // --- a comparison of two analyses -------------------------------------------------------------

  function changeText(a, b) {
    if (a === null && b === null) return "";
    if (a === null) return "only in B";
    if (b === null) return "only in A";
    if (a === b) return "0";
    return signed(b - a) + (a ? " (" + (b > a ? "+" : "") + (100 * (b - a) / a).toFixed(1) + "%)" : "");
  }

  function diffPage(diff, title) {
    var nodes = {};
    var names = Object.keys(diff.modules);
    names.forEach(function (name) {
      var info = diff.modules[name];
      nodes[name] = { name: name, label: name ? name.slice(name.lastIndexOf(".") + 1) : "model",
        type: info.types[0] === info.types[1] || info.types[1] === null ? info.types[0]
          : (info.types[0] === null ? info.types[1] : info.types[0] + " \u2192 " + info.types[1]),
        only: info.types[0] === null ? "B" : (info.types[1] === null ? "A" : null),
        info: info, children: [], params: [], depth: 0, parent: null, kind: "module", called: true };
    });
    names.forEach(function (name) {
      if (!name) return;
      var up = parentName(name);
      while (up && !nodes[up]) up = parentName(up);
      nodes[name].parent = nodes[up];
      nodes[up].children.push(nodes[name]);
    });
    names.forEach(function (name) { nodes[name].depth = nodes[name].parent ? nodes[name].parent.depth + 1 : 0; });
    var root = nodes[""];
    var columns = [];
    diff.metrics.forEach(function (metric) {
      var total = diff.totals[metric];
      var scale = Math.max(total.a || 0, total.b || 0) || 1;
      ["a", "b"].forEach(function (side) {
        columns.push({ key: metric + ":" + side, label: "#" + metric + " " + side.toUpperCase(),
          raw: function (node) { return node.info[metric][side]; },
          text: function (node) { var v = node.info[metric][side]; return v === null ? "\u2014" : human(v); },
          bar: function (node) { var v = node.info[metric][side]; return v === null ? null : v / scale; } });
      });
      columns.push({ key: metric + ":change", label: "change", width: "minmax(150px, 1.6fr)",
        raw: function (node) { return node.info[metric].delta; },
        text: function (node) { return changeText(node.info[metric].a, node.info[metric].b); },
        cls: function (node) { var d = node.info[metric].delta; return d > 0 ? "plus" : (d < 0 ? "minus" : ""); } });
    });
    var header = el("header", {}, [el("h1", {}, [title]),
      el("p", {}, [el("b", { text: "A: " }), diff.labels[0], " \u00A0 ", el("b", { text: "B: " }), diff.labels[1]]),
      el("div", { cls: "cards" }, diff.metrics.map(function (metric) {
        var t = diff.totals[metric];
        return el("div", { cls: "card", "data-total": metric }, [
          el("b", { text: human(t.a) + " \u2192 " + human(t.b) }),
          el("span", { text: metricName(metric) + ": " + changeText(t.a, t.b) })]);
      }))]);
    document.body.appendChild(header);
    tabs([
      { id: "modules", label: "Modules", fill: function (panel) {
        var grid = new TreeGrid(panel, root, columns, { decorate: function (node, cell) {
          if (node.only) cell.appendChild(el("span", { cls: "only " + node.only.toLowerCase(), text: "only in " + node.only }));
        } });
        panel.insertBefore(treeControls(grid, "module", true), panel.firstChild);
        window.torchtallyGrid = grid;
      } },
      { id: "operators", label: "Operators", fill: function (panel) {
        Object.keys(diff.operators).forEach(function (metric) {
          var ops = diff.operators[metric];
          panel.appendChild(el("h2", { text: metricName(metric) + " per operator" }));
          var table = barTable(["operator", "#" + metric + " A", "#" + metric + " B", "change"],
            Object.keys(ops).map(function (op) {
              var p = ops[op];
              return [op, p.a === null ? "\u2014" : p.a, p.b === null ? "\u2014" : p.b, changeText(p.a, p.b)];
            }));
          table.setAttribute("data-metric", metric);
          panel.appendChild(table);
        });
      } },
      { id: "only", label: "One side only", fill: function (panel) {
        [["A", diff.only_in_a], ["B", diff.only_in_b]].forEach(function (pair) {
          panel.appendChild(el("h2", { text: "Only in " + pair[0] + " (" + diff.labels[pair[0] === "A" ? 0 : 1] + "): " + pair[1].length }));
          panel.appendChild(el("ul", { id: "only-" + pair[0].toLowerCase() }, pair[1].map(function (name) {
            return el("li", { text: name });
          })));
        });
      } },
    ]);
  }

  // --- a sweep: one analysis per input size ------------------------------------------------------

  function sweepPage(sweep, title) {
    var points = sweep.points;
    document.body.appendChild(el("header", {}, [el("h1", {}, [title]),
      el("p", { cls: "note", text: "One analysis per value of " + sweep.parameters.join(", ") +
        " (" + sweep.mode + " mode). Each plot shows how a metric grows; the table has the numbers." })]));
    var main = el("main", {});
    document.body.appendChild(main);
    var numeric = sweep.parameters.length === 1 && points.every(function (p) {
      return typeof p.values[sweep.parameters[0]] === "number";
    });
    var xs = points.map(function (p, i) { return numeric ? p.values[sweep.parameters[0]] : i; });
    var plots = el("div", { cls: "cards" });
    main.appendChild(plots);
    sweep.metrics.forEach(function (metric) {
      var box = el("div", { cls: "plot card", "data-metric": metric });
      plots.appendChild(box);
      var ys = points.map(function (p) { return p.totals[metric]; });
      /* global uPlot */
      new uPlot({
        title: metricName(metric), width: 420, height: 240,
        scales: { x: { time: false } },
        axes: [
          { label: numeric ? sweep.parameters[0] : "point",
            values: function (u, ticks) {
              return ticks.map(function (t) { return numeric ? String(t) : (points[t] ? points[t].label : ""); });
            } },
          { size: 70, values: function (u, ticks) { return ticks.map(human); } },
        ],
        series: [{ label: sweep.parameters.join(", ") }, { label: metricName(metric), stroke: "#2f6fdb",
          width: 2, points: { show: true, size: 6 }, value: function (u, v) { return human(v); } }],
      }, [xs, ys], box);
    });
    var headers = [sweep.parameters.join(", ")];
    sweep.metrics.forEach(function (m) { headers.push("#" + m, "x first"); });
    var table = barTable(headers, points.map(function (p) {
      var row = [p.label];
      sweep.metrics.forEach(function (m) {
        var first = points[0].totals[m];
        row.push(p.totals[m], first ? (p.totals[m] / first).toFixed(2) : "");
      });
      return row;
    }));
    table.id = "sweep-table";
    main.appendChild(el("h2", { text: "Totals" }));
    main.appendChild(table);
  }

  // --- entry ------------------------------------------------------------------------------------

  var pages = {
    analysis: function () { analysisPage(PAYLOAD.analysis, PAYLOAD.title); },
    diff: function () { diffPage(PAYLOAD.diff, PAYLOAD.title); },
    sweep: function () { sweepPage(PAYLOAD.sweep, PAYLOAD.title); },
  };
  if (window.torchtallyPages) {
    Object.keys(window.torchtallyPages).forEach(function (k) { pages[k] = window.torchtallyPages[k]; });
  }
  window.torchtallyReport = { human: human, signed: signed, el: el, TreeGrid: TreeGrid, barTable: barTable,
    buildTree: buildTree, analysisColumns: analysisColumns, inputsText: inputsText, tabs: tabs,
    numberColumns: numberColumns, treeControls: treeControls, facts: facts, metricName: metricName };
  try {
    pages[PAYLOAD.kind]();
    document.documentElement.setAttribute("data-ready", "true");
  } catch (error) {
    document.body.appendChild(el("pre", { text: "torchtally report: " + error.stack }));
    throw error;
  }
})();
