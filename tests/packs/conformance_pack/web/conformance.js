console.log("conformance pack loaded");
