"""What runs once on the launching machine: plan the inputs, choose the runner, run a job into a staging
folder and commit it."""
