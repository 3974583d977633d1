from glmcourse.modeling.modeling_chatglm import ChatGLMForConditionalGeneration  # noqa: F401
