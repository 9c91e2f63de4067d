console.log("surface pack");
