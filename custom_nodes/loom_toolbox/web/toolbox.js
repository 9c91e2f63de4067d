// Loaded by the canvas from /extensions/loom_toolbox/toolbox.js: packs can extend the front end here.
console.debug("loom_toolbox front-end extension loaded");
