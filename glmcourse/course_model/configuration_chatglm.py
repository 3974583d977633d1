from glmcourse.modeling.configuration_chatglm import ChatGLMConfig  # noqa: F401
