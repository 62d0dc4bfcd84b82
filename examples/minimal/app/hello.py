"""Run by the minimal example's setup step: its output lands in /workspace/setup.out."""

print("hello")
