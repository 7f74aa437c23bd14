import { defineConfig } from "vite";

// The build is committed and embedded in the Go binary (ui/embed.go), so
// it must be byte-for-byte reproducible: fixed file names, no timestamps.
export default defineConfig({
  base: "/ui/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/[name][extname]",
      },
    },
  },
});
