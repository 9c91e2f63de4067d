// Loaded by the canvas from /extensions/loom_toolbox/toolbox.js once `window.loom` exists: packs can
// extend the front end here (see docs/custom-nodes.md).
console.debug("loom_toolbox front-end extension loaded");
