import inspect

import ds2ir.errors as errors


def test_all_lists_every_exception():
    exported = {name for name, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)}
    assert exported == set(errors.__all__)
    assert all(issubclass(getattr(errors, name), errors.Ds2irError) for name in errors.__all__)


def test_container_error_names_image_step_and_tail():
    error = errors.ContainerError(step="freeze", command=["docker", "run", "img"], exit_code=2,
                                  log_tail="ds2ir: error: missing variable layer_2/bias", image="ds2ir/freeze:1")
    text = str(error)
    assert "Step 'freeze' failed with exit code 2" in text
    assert "image: ds2ir/freeze:1" in text and "missing variable layer_2/bias" in text
    assert isinstance(error, errors.CommandError)


def test_config_error_points_at_file_and_key():
    assert str(errors.ConfigError("bad", file="t.toml", key="targets.x.y")) == "t.toml: [targets.x.y]: bad"
