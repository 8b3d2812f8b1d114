"""Ray orchestration of samples x methods over GPU actors (plan, worker, writer, driver, reducer)."""
