"""The script test_ray_up.py hands to `ray submit cluster-local.yaml`: it runs
on the head (copied to ~/, run with the head's python and its ~/.pynenc-env),
submits tasks of examples/tasks.py and prints what came back and who ran it."""

import json
import time

from examples.tasks import add, app, fan_out, slow_square


def main() -> dict:
    t0 = time.monotonic()
    out: dict = {"backend": app.config.settings.backend, "runner_cls": app.config.runner_cls,
                 "config_sources": {k: v for k, v in app.config.sources.items()
                                    if k in ("backend", "redis_url", "runner_cls")}}
    inv = add(1, 2)
    out["add_final"] = inv.wait(180)  # the runner may still be starting its actors
    out["add"] = inv.result if out["add_final"] else None
    out["add_status"] = str(inv.status)
    out["add_ran_on"] = inv.history[-1].runner_id
    out["first_result_sec"] = round(time.monotonic() - t0, 1)
    squares = list(slow_square.parallelize(range(8)))
    out["squares_final"] = all(i.wait(120) for i in squares)
    out["squares"] = [i.result for i in squares] if out["squares_final"] else None
    out["squares_ran_on"] = sorted({i.history[-1].runner_id for i in squares})
    fan = fan_out(5)
    out["fan_out_final"] = fan.wait(120)
    out["fan_out"] = fan.result if out["fan_out_final"] else None
    out["sec"] = round(time.monotonic() - t0, 1)
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main()), flush=True)
