from glmcourse.modeling.tokenization_chatglm import ChatGLMTokenizer  # noqa: F401
