"""Small end-to-end demonstrations on real data, sized for a CPU."""
